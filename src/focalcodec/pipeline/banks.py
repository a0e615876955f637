"""Speaker banks for kNN voice conversion.

A speaker bank is the *matching set* of :meth:`FocalCodec.toks_to_sig`: the encoder
features (M, D) of some reference recordings of the target voice, concatenated over
files. Building one costs an encoder pass over every reference, so a bank can be saved
as a ``.safetensors`` file (tensor ``matching_set`` plus metadata naming the model) and
reused. Conversion then replaces every decoded frame by the mean of its ``topk`` nearest
bank frames.

Example
-------
>>> bank = matching_set_from_files(codec, ["ref1.wav", "ref2.flac"])  # doctest: +SKIP
>>> save_bank("alice.safetensors", bank, codec)  # doctest: +SKIP
>>> sig = codec.toks_to_sig(toks, matching_set=load_bank("alice.safetensors", codec))
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import FormatError, ModelMismatchError
from ..files.atomic import atomic_write
from ..files.audio import AudioReader, load_audio
from ..identity import model_hash, model_name
from .compress import prepare_signal
from .longaudio import OVERLAP_SECONDS, WINDOW_SECONDS, fits_whole

if TYPE_CHECKING:
    from ..codec import FocalCodec

__all__ = [
    "BANK_FORMAT",
    "feats_long",
    "load_bank",
    "matching_set_from_files",
    "matching_set_from_signals",
    "save_bank",
]

BANK_FORMAT = "focalcodec-speaker-bank"
BANK_VERSION = "1"
_TENSOR = "matching_set"


def matching_set_from_signals(
    codec: FocalCodec, sigs: Iterable[np.ndarray], sample_rate: int
) -> torch.Tensor:
    """Encoder features of several recordings, stacked into one matching set.

    Parameters
    ----------
    codec
        The codec whose decoder will use the set.
    sigs
        Waveforms, each of shape (N_i,), at ``sample_rate``.
    sample_rate
        Their rate in Hz (resampled to the model's input rate).

    Returns
    -------
        Matching set, shape (M, D), float32 on the CPU, M = total number of frames.
    """
    parts = []
    device = codec.device
    for i, sig in enumerate(sigs):
        sig = prepare_signal(sig, sample_rate, codec, f"reference {i}")
        with torch.inference_mode():
            feats = codec.sig_to_feats(torch.from_numpy(sig)[None].to(device))
        parts.append(feats[0].to("cpu", torch.float32))
    if not parts:
        raise FormatError("no reference audio was given to build the speaker bank")
    return torch.cat(parts)


def matching_set_from_files(
    codec: FocalCodec, paths: Iterable[str | os.PathLike]
) -> torch.Tensor:
    """Like :func:`matching_set_from_signals`, reading (any-rate) audio files.

    Returns
    -------
        Matching set, shape (M, D), float32 on the CPU.
    """
    parts = []
    for path in paths:
        with AudioReader(path, codec.sample_rate_input) as reader:
            long = not fits_whole(codec, reader.num_samples)
            parts.append(feats_long(codec, reader) if long else None)
        if not long:
            sig, rate = load_audio(path, codec.sample_rate_input)
            parts[-1] = matching_set_from_signals(codec, [sig], rate)
    if not parts:
        raise FormatError("no reference audio was given to build the speaker bank")
    return torch.cat(parts)


def feats_long(codec: FocalCodec, reader: AudioReader | np.ndarray) -> torch.Tensor:
    """Encoder features (M, D) of a long recording, window by window.

    ``reader`` is an :class:`~focalcodec.files.audio.AudioReader` at the model's input
    rate or a waveform (1, N) there.

    Windows of :data:`~focalcodec.pipeline.longaudio.WINDOW_SECONDS` see
    :data:`~focalcodec.pipeline.longaudio.OVERLAP_SECONDS` of context on each side and keep
    the frames of their core, so the model never sees more than a window at a time.
    """
    from ..streaming.longform import plan_windows

    hop = int(codec.min_samples)  # input samples per encoder frame
    rate = codec.sample_rate_input / hop
    total = reader.shape[-1]
    windows = plan_windows(
        -(-total // hop), round(WINDOW_SECONDS * rate), round(OVERLAP_SECONDS * rate)
    )
    device = codec.device
    parts = []
    for k, w in enumerate(windows):
        last = k == len(windows) - 1
        stop = total if last else min(total, (w.stop + 1) * hop)
        piece = torch.as_tensor(reader[:, w.start * hop : stop]).to(device)
        with torch.inference_mode():
            feats = codec.sig_to_feats(piece)[0]
        keep = slice(w.core_start - w.start, None if last else w.core_stop - w.start)
        parts.append(feats[keep].to("cpu", torch.float32))
    return torch.cat(parts)


def save_bank(
    path: str | os.PathLike,
    matching_set: torch.Tensor,
    codec: FocalCodec,
    *,
    sources: Iterable[str] = (),
    force: bool = False,
) -> None:
    """Write a speaker bank atomically.

    Parameters
    ----------
    path
        Output ``.safetensors`` file.
    matching_set
        Features, shape (M, D).
    codec
        The codec that computed them (its identity is recorded).
    sources
        Names of the reference files, kept as metadata.
    force
        Overwrite an existing file (never one of ``sources``).
    """
    from safetensors.torch import save

    metadata = {
        "format": BANK_FORMAT,
        "version": BANK_VERSION,
        "model_hash": model_hash(codec).hex(),
        "model_name": model_name(codec),
        "sources": json.dumps([str(s) for s in sources]),
    }
    tensors = {_TENSOR: matching_set.detach().to("cpu", torch.float32).contiguous()}
    data = save(tensors, metadata=metadata)
    # The recordings the bank comes from are inputs: never replaced, even with force.
    with atomic_write(path, force=force, inputs=[s for s in sources if s]) as fileobj:
        fileobj.write(data)


def load_bank(path: str | os.PathLike, codec: FocalCodec | None = None) -> torch.Tensor:
    """Read a speaker bank, checking that it was made by ``codec``.

    Parameters
    ----------
    path
        A file written by :func:`save_bank`.
    codec
        The codec that will use it; ``None`` skips the identity check.

    Returns
    -------
        Matching set, shape (M, D), float32 on the CPU.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        with open(path, "rb") as fileobj:
            data = fileobj.read()
        tensors = load(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a speaker bank ({exc})") from None
    if metadata.get("format") != BANK_FORMAT or _TENSOR not in tensors:
        raise FormatError(f"{path}: not a focalcodec speaker bank")
    bank = tensors[_TENSOR]
    if bank.dim() != 2 or not bank.shape[0] or not bank.is_floating_point():
        raise FormatError(
            f"{path}: matching set has shape {tuple(bank.shape)} and dtype "
            f"{bank.dtype}; expected (M, D) floats"
        )
    if not bool(torch.isfinite(bank).all()):
        raise FormatError(f"{path}: matching set holds NaN or infinite values")
    if codec is not None and metadata.get("model_hash") != model_hash(codec).hex():
        made_by = metadata.get("model_name") or "an unnamed model"
        raise ModelMismatchError(
            f"{path}: speaker bank made by {made_by} (config "
            f"{metadata.get('model_hash')}), but the model in use has config "
            f"{model_hash(codec).hex()}; rebuild it with --reference"
        )
    return bank.float()


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header size, then the JSON header.
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return header.get("__metadata__") or {}
