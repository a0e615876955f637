"""Waveform <-> ``.fcz`` bytes, through a codec.

:func:`compress` turns a waveform into a self-describing container (see
``docs/format.md``) and :func:`decompress` turns it back into a waveform of exactly the
original duration. The container records which model made it (the first 8 bytes of
``codec.config_hash()`` and, when there is one, a loadable name), so decoding with another
model is refused instead of producing noise.

``entropy="adaptive"`` (or a token LM, ``focalcodec.lm.LMEntropyModel(DIR)``) codes the
tokens losslessly below their nominal width (see ``docs/entropy.md``).

Example
-------
>>> from focalcodec import FocalCodec
>>> from focalcodec.pipeline.compress import compress, decompress
>>> codec = FocalCodec.from_pretrained("focalcodec_50hz").eval()  # doctest: +SKIP
>>> data = compress(sig, 16000, codec)  # doctest: +SKIP
>>> rec, rate = decompress(data, codec)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
import torch

from ..errors import AudioError, FormatError
from ..fcz import bitstream
from ..fcz.bitstream import Container, Header
from ..fcz.entropy import ENTROPY_LM, ENTROPY_NONE, EntropyModel, resolve_entropy
from ..files.atomic import atomic_write
from ..files.audio import check_signal, resample
from ..identity import check_model, header_for, loadable_name
from ..protocol import Codec

if TYPE_CHECKING:
    from ..codec import FocalCodec

__all__ = [
    "CodecSource",
    "coder_for",
    "compress",
    "compress_to_file",
    "decode_tokens",
    "decompress",
    "decompress_from_file",
    "encode_batch",
    "encode_tokens",
    "min_samples",
    "prepare_signal",
    "resolve_codec",
    "tokens_to_bytes",
]

# A codec, or a function that builds the right codec for a header.
CodecSource = Union["FocalCodec", Callable[[Header], "FocalCodec"], None]


def coder_for(header: Header, entropy: str | EntropyModel | None = None):
    """A fresh :class:`~focalcodec.fcz.entropy.PacketCoder` for a header's entropy model.

    Parameters
    ----------
    header
        The container header.
    entropy
        The entropy model: needed for a file coded with a token LM (the adaptive model
        needs nothing); checked against the header when it is attached to a reader.

    Returns
    -------
        The coder, or None for a file without entropy coding.
    """
    if header.entropy == ENTROPY_NONE:
        return None
    model = resolve_entropy(entropy)
    if model is None or model.entropy != header.entropy:
        if header.entropy != ENTROPY_LM:
            model = resolve_entropy("adaptive")
        else:
            raise FormatError(
                "the file is entropy-coded with token LM "
                f"{header.entropy_hash.hex()}; pass that LM (CLI: --lm DIR)"
            )
    return model.coder(header.bits_per_token, header.model_hash)


def resolve_codec(
    header: Header, codec: CodecSource = None, *, where: str = "input"
) -> Codec:
    """Return the codec for a header: the one given, one built by a loader, or by name.

    Parameters
    ----------
    header
        The container header.
    codec
        A codec; a callable ``loader(header) -> codec``; or ``None`` to load
        ``header.model_name`` (a packaged name or Hub id only) with
        :func:`focalcodec.pipeline.models.load_codec`.
    where
        The file's name, for messages.

    Returns
    -------
        The codec, ready for inference, checked against the header.
    """
    if codec is None:
        from .models import load_codec

        codec = load_codec(loadable_name(header, where=where))
    elif not isinstance(codec, Codec) and callable(codec):
        codec = codec(header)
    check_model(header, codec, where=where)
    return codec


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------


def min_samples(codec: Codec) -> int:
    """Shortest input, in samples at the model rate, that the codec accepts.

    One encoder frame (320 samples, 20 ms, for the released models) for the PyTorch
    model: shorter inputs hold no complete frame to tokenize. See
    :attr:`focalcodec.protocol.Codec.min_samples`.
    """
    return int(codec.min_samples)


def prepare_signal(
    sig: np.ndarray | torch.Tensor, sample_rate: int, codec: FocalCodec, name: str
) -> np.ndarray:
    """Validate a waveform and resample it to the model's input rate.

    Parameters
    ----------
    sig
        Waveform, shape (N,) or (1, N).
    sample_rate
        Its rate in Hz.
    codec
        The codec that will encode it.
    name
        How to call the signal in error messages.

    Returns
    -------
        Waveform, shape (N',), float32, at ``codec.sample_rate_input``.
    """
    if isinstance(sig, torch.Tensor):
        sig = sig.detach().to("cpu", torch.float32).numpy()
    sig = check_signal(sig, name=name)
    sig = resample(sig, int(sample_rate), int(codec.sample_rate_input))
    need = min_samples(codec)
    if len(sig) < need:
        rate = codec.sample_rate_input
        raise AudioError(
            f"{name}: too short ({len(sig)} samples at {rate} Hz); this model needs at "
            f"least {need} samples ({1000 * need / rate:.0f} ms)"
        )
    return sig


def encode_tokens(
    sig: np.ndarray | torch.Tensor,
    sample_rate: int,
    codec: FocalCodec,
    *,
    name: str = "signal",
) -> tuple[np.ndarray, int]:
    """Run the codec's encoder on one waveform.

    Parameters
    ----------
    sig
        Waveform, shape (N,) or (1, N), float, at ``sample_rate``.
    sample_rate
        Its rate in Hz; it is resampled to ``codec.sample_rate_input`` if needed.
    codec
        The codec.
    name
        How to call the signal in error messages.

    Returns
    -------
        Token ids, shape (L,), int64, and the number of samples at the model rate.
    """
    sig = prepare_signal(sig, sample_rate, codec, name)
    return encode_batch([sig], codec)[0], len(sig)


def encode_batch(sigs: list[np.ndarray], codec: FocalCodec) -> list[np.ndarray]:
    """Tokenize several prepared waveforms, sharing forward passes where possible.

    Signals of equal length are stacked into one batch; others run alone. The codec
    gives every item what it gives on its own, so batching changes speed, not tokens.

    Parameters
    ----------
    sigs
        Waveforms, each of shape (N_i,), float32, at ``codec.sample_rate_input`` (see
        :func:`prepare_signal`).
    codec
        The codec.

    Returns
    -------
        Token ids per input, shape (L_i,), int64, in input order.
    """
    groups: dict[int, list[int]] = {}
    for i, sig in enumerate(sigs):
        groups.setdefault(len(sig), []).append(i)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(sigs)
    device = codec.device
    for idx in groups.values():
        batch = torch.from_numpy(np.stack([sigs[i] for i in idx])).to(device)
        with torch.inference_mode():
            toks = codec.sig_to_toks(batch).to("cpu", torch.int64).numpy()
        for row, i in zip(toks, idx, strict=True):
            out[i] = row
    return out


def compress(
    sig: np.ndarray | torch.Tensor,
    sample_rate: int,
    codec: FocalCodec,
    entropy: str | EntropyModel | None = None,
) -> bytes:
    """Encode a mono waveform into ``.fcz`` container bytes.

    Parameters
    ----------
    sig
        Waveform, shape (N,) or (1, N), float in [-1, 1].
    sample_rate
        Its rate in Hz (any rate; resampled to the model's input rate).
    codec
        The codec, in eval mode.
    entropy
        None or ``"none"`` (plain packing), ``"adaptive"``, or an entropy model
        object such as ``focalcodec.lm.LMEntropyModel(DIR)``.

    Returns
    -------
        The container: about ``bitrate * duration / 8`` bytes plus a header of a few
        dozen bytes (less with entropy coding, never more than 9 bytes more).
    """
    toks, num_samples = encode_tokens(sig, sample_rate, codec)
    return tokens_to_bytes(toks, num_samples, header_for(codec, sample_rate), entropy)


def tokens_to_bytes(
    toks: np.ndarray,
    num_samples: int,
    header: Header,
    entropy: str | EntropyModel | None = None,
) -> bytes:
    """Container bytes of tokens (L,), entropy-coded when ``entropy`` is given.

    ``header`` is a plain header (see :func:`header_for`); the entropy model's fields
    are filled in here. When coding saves nothing, the plain (version 1) container is
    returned: the result is never larger than plain packing.
    """
    plain = bitstream.dumps(header, toks, num_samples)
    model = resolve_entropy(entropy)
    if model is None:
        return plain
    header = dataclasses.replace(
        header, entropy=model.entropy, entropy_hash=model.entropy_hash
    )
    coder = model.coder(header.bits_per_token, header.model_hash)
    coded = bitstream.dumps(header, toks, num_samples, coder)
    return coded if len(coded) < len(plain) else plain


def compress_to_file(
    sig: np.ndarray | torch.Tensor,
    sample_rate: int,
    codec: FocalCodec,
    dest: str | os.PathLike | BinaryIO,
    *,
    force: bool = False,
    entropy: str | EntropyModel | None = None,
) -> None:
    """Like :func:`compress`, writing to a path (atomically) or a binary file object.

    Parameters
    ----------
    sig, sample_rate, codec, entropy
        As for :func:`compress`.
    dest
        Output path (refused if it exists, unless ``force``) or writable file object.
    force
        Overwrite an existing output file.
    """
    data = compress(sig, sample_rate, codec, entropy)
    if isinstance(dest, (str, os.PathLike)):
        with atomic_write(dest, force=force) as fileobj:
            fileobj.write(data)
    else:
        dest.write(data)


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------


def decode_tokens(
    container: Container, codec: FocalCodec, **toks_to_sig_kwargs
) -> tuple[torch.Tensor, int]:
    """Decode a parsed container with a codec already checked against it.

    Parameters
    ----------
    container
        The parsed container.
    codec
        The codec.
    **toks_to_sig_kwargs
        Passed to ``codec.toks_to_sig`` (for example ``matching_set`` and ``topk``).

    Returns
    -------
        Waveform, shape (M,), float32 on the CPU, with
        ``M = codec.output_length(num_samples)``, and its rate.
    """
    if not len(container.toks):
        raise FormatError("the file holds no tokens, so there is no audio to decode")
    out_len = codec.output_length(container.num_samples)
    toks = torch.from_numpy(container.toks)[None].to(codec.device)
    with torch.inference_mode():
        sig = codec.toks_to_sig(toks, output_length=out_len, **toks_to_sig_kwargs)
    return sig[0].to("cpu", torch.float32), int(codec.sample_rate_output)


def decompress(
    data: bytes,
    codec: CodecSource = None,
    entropy: str | EntropyModel | None = None,
) -> tuple[torch.Tensor, int]:
    """Decode ``.fcz`` bytes back into a waveform.

    Parameters
    ----------
    data
        The container bytes.
    codec
        The codec that made them; a loader ``loader(header) -> codec``; or ``None`` to
        load the model named in the header.
    entropy
        The token LM a file was entropy-coded with (``LMEntropyModel``); not needed
        for plain or ``adaptive`` files.

    Returns
    -------
        Waveform, shape (M,), float32, exactly as long as the original signal at the
        model's output rate, and that rate.

    Raises
    ------
    FormatError
        The data is truncated or corrupted (:class:`bitstream.TruncatedError`,
        :class:`bitstream.ChecksumError`), or was made by another model
        (:class:`ModelMismatchError`).
    """
    return decompress_from_file(io.BytesIO(data), codec, entropy)


def decompress_from_file(
    source: str | os.PathLike | BinaryIO,
    codec: CodecSource = None,
    entropy: str | EntropyModel | None = None,
) -> tuple[torch.Tensor, int]:
    """Like :func:`decompress`, reading from a path or a binary file object."""
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open("rb") as fileobj:
            return decompress_from_file(fileobj, codec, entropy)
    reader = bitstream.Reader(source)
    # Check the models before reading the payload, so a mismatch is reported first.
    model = resolve_codec(reader.header, codec)
    reader.attach(coder_for(reader.header, entropy))
    return decode_tokens(reader.read_all(), model)
