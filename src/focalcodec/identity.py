"""Which model made a file: the one owner of model identity.

Everything that ties stored data to a model goes through here: the 8-byte model hash and
the portable name that ``.fcz`` headers, speaker banks and token folders record
(:func:`model_hash`, :func:`model_name`, :func:`header_for`), the digest of a model's
weights that token folders record (:func:`weights_hash`), the check that a file was
made by the codec about to read it (:func:`check_model`, which also accepts the hash that
earlier versions stored), and which header names may be loaded without the user naming
a model (:func:`loadable_name`). The byte sizes of the stored fields
(:data:`HASH_SIZE`, :data:`MAX_NAME_BYTES`) are those of the ``.fcz`` format, defined in
:mod:`focalcodec.fcz.limits` and repeated here for callers.

Model names and Hub ids themselves belong to :mod:`focalcodec.pretrained`.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import torch

from .config import legacy_config_hash
from .errors import ConfigError, FormatError, ModelMismatchError
from .fcz.bitstream import Header
from .fcz.limits import HASH_SIZE, MAX_NAME_BYTES
from .pretrained import portable_name

__all__ = [
    "HASH_SIZE",
    "MAX_NAME_BYTES",
    "check_model",
    "hash_bytes",
    "header_for",
    "loadable_name",
    "model_hash",
    "model_name",
    "weights_hash",
]

# What a loadable header name looks like: a packaged name or a Hub id ``user/repo``.
_NAME = re.compile(r"[^\W_][\w.\-]*(/[\w.\-]+)?")
# Header fields that must equal the codec's own for its tokens to decode right.
_SHAPE_FIELDS = (
    "bits_per_token",
    "sample_rate_input",
    "sample_rate_output",
    "hop_length",
)


def hash_bytes(digest: str) -> bytes:
    """The :data:`HASH_SIZE` bytes stored for a hex digest (its first bytes).

    A digest that is not hex (a hand-written config hash) is stored as its UTF-8 bytes,
    cut or zero-padded to size.
    """
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raw = digest.encode()
    return raw[:HASH_SIZE].ljust(HASH_SIZE, b"\0")


def model_hash(codec: Any) -> bytes:
    """The 8-byte identity stored in headers: the start of ``codec.config_hash()``."""
    return hash_bytes(codec.config_hash())


def weights_hash(codec: Any) -> str | None:
    """16-hex-digit digest of a model's weights (every state-dict entry: name, dtype,
    shape and values). A codec without a PyTorch state dict (an ONNX export) gives the
    digest it records as ``weights_digest``, or None.

    Two checkpoints of one architecture (retrained, fine-tuned) have the same
    :func:`model_hash` but different weight hashes. The digest reads every weight, so it
    is computed once per model and kept on the codec (``_weights_hash``, declared by
    :class:`~focalcodec.FocalCodec`), keyed by the weights' storage and version
    counters: changing a weight in place (training, ``load_state_dict``) recomputes it.
    """
    if not isinstance(codec, torch.nn.Module):
        return getattr(codec, "weights_digest", None)  # an ONNX export records it
    state = codec.state_dict()
    key = _weights_key(state)
    cached = getattr(codec, "_weights_hash", None)
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        data = tensor.to("cpu").contiguous()
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the bits
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes())
    value = digest.hexdigest()[:16]
    if key is not None:
        codec._weights_hash = (key, value)
    return value


def _weights_key(state: dict[str, torch.Tensor]) -> tuple | None:
    """What changes when a weight does: storage address and in-place version."""
    try:
        return tuple((t.data_ptr(), t._version) for t in state.values())
    except RuntimeError:  # inference tensors keep no version counter: do not cache
        return None


def model_name(codec: Any) -> str:
    """The name stored in headers: see :func:`focalcodec.pretrained.portable_name`."""
    return portable_name(getattr(codec, "model_id", None))


def header_for(codec: Any, source_sample_rate: int = 0) -> Header:
    """The ``.fcz`` header for tokens made by ``codec``.

    Parameters
    ----------
    codec
        The codec that produces the tokens (any :class:`~focalcodec.protocol.Codec`).
    source_sample_rate
        Rate of the audio before resampling (informational; 0 when unknown).
    """
    return Header(
        bits_per_token=int(codec.bits_per_token),
        model_hash=model_hash(codec),
        model_name=model_name(codec),
        sample_rate_input=int(codec.sample_rate_input),
        sample_rate_output=int(codec.sample_rate_output),
        hop_length=int(codec.hop_length),
        source_sample_rate=int(source_sample_rate),
    )


def _accepted_hashes(codec: Any, current: bytes) -> set[bytes]:
    """The codec's hash, and the one earlier versions stored (see
    :func:`focalcodec.config.legacy_config_hash`)."""
    accepted = {current}
    config = getattr(codec, "config", None)
    if isinstance(config, dict):
        try:
            accepted.add(hash_bytes(legacy_config_hash(config)))
        except (ValueError, ConfigError):
            pass
    return accepted


def _describe(name: str, digest: bytes) -> str:
    return f"{name or 'an unnamed model'} (config {digest.hex()})"


def check_model(header: Header, codec: Any, *, where: str = "input") -> None:
    """Raise :class:`~focalcodec.errors.ModelMismatchError` unless ``codec`` made the
    file whose header this is.

    Parameters
    ----------
    header
        The container header.
    codec
        The codec about to decode it.
    where
        The file name, for the message.
    """
    ours = header_for(codec)
    if header.model_hash not in _accepted_hashes(codec, ours.model_hash):
        raise ModelMismatchError(
            f"{where}: made by {_describe(header.model_name, header.model_hash)}, but "
            f"the model in use is {_describe(ours.model_name, ours.model_hash)}; "
            "decode it with the model that encoded it"
        )
    for field in _SHAPE_FIELDS:
        if getattr(header, field) != getattr(ours, field):
            raise ModelMismatchError(
                f"{where}: header {field}={getattr(header, field)} but the model has "
                f"{getattr(ours, field)}"
            )


def loadable_name(header: Header, *, where: str = "this file") -> str:
    """The header's model name, if it may be loaded without the user naming a model.

    Only a packaged name or a Hub id qualifies. A name that is empty, that is not of
    the form a writer stores (:func:`focalcodec.pretrained.portable_name`), or that also
    names a file or folder here is refused: a file must never make the decoder load
    local code or weights the user did not choose.
    """
    name = header.model_name
    if not name:
        raise FormatError(
            f"{where} was made by {_describe('', header.model_hash)}, a local model "
            "without a loadable name; pass the codec (CLI: --model DIR)"
        )
    parts = name.split("/")
    local = os.path.lexists(name) or os.path.lexists(os.path.expanduser(name))
    if (
        local
        or not _NAME.fullmatch(name)
        or any(p in (".", "..") for p in parts)
        or not portable_name(name)
    ):
        raise FormatError(
            f"{where} names its model {name!r}, which is not a packaged name or Hub "
            "id, or is also a local path here; it is not loaded implicitly: pass the "
            "model yourself (CLI: --model)"
        )
    return name
