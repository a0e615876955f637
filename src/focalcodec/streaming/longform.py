"""Audio of any length with bounded memory: windows with overlap and cross-fade.

Non-causal models attend over the whole input (memory grows with its square) and their
focal modulation pools over all of it, so an hour of audio cannot go through in one call.
Here the input is cut into windows of ``chunk_seconds`` plus ``overlap_seconds`` of
context on each side; every window runs on its own and neighbours are cross-faded over
``overlap_seconds`` centred on their common boundary::

    window k-1  [ctx|......core k-1......|ctx]
    window k                    [ctx|......core k......|ctx]
    weight k-1  ‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\\___
    weight k                          ___/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾
                                        ^ fade: overlap_seconds, centred on the boundary

Encoding fades the unit-norm latents before they are quantised (tokens are their signs);
decoding fades the waveforms. Window edges fall on token boundaries, so every window sees
the same frame grid as whole-input processing. Peak memory depends on the window length
only; with a lazy input (:class:`AudioFileSignal`) and :func:`iter_decode_long` writing
pieces as they come, it is flat in the input length.

Causal models need no overlap: they run as a stream (:mod:`focalcodec.streaming.session`) in steps
of ``chunk_seconds``, which gives the offline tokens exactly; ``overlap_seconds`` is then
unused. The last partial 80 ms block is encoded as it is (``pad="none"``).

How far the result is from whole-input processing is measured in ``docs/streaming.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from ..errors import AudioError, InputError
from .session import StreamDecoder, StreamEncoder

__all__ = [
    "AudioFileSignal",
    "Window",
    "decode_long",
    "encode_long",
    "iter_decode_long",
    "plan_windows",
    "sig_to_sig_long",
]


class Window(NamedTuple):
    """One window of a long input, in units of tokens.

    Attributes
    ----------
    start, stop
        Tokens whose input the window processes (core plus context).
    core_start, core_stop
        Tokens the window is responsible for; neighbours share the fade around the
        core edges.
    """

    start: int
    stop: int
    core_start: int
    core_stop: int


class AudioFileSignal:
    """A mono audio file read lazily, so that a long input never sits in memory.

    Indexing with a slice of samples, ``signal[a:b]``, reads just that part (channels
    averaged) as float32 of shape (1, b - a). The file must already be at the model's
    input rate.

    Parameters
    ----------
    path
        Any file soundfile can seek in (wav, flac, ogg...).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{self.path}: cannot read audio ({exc})") from exc
        self.sample_rate = int(info.samplerate)
        self.shape = (1, int(info.frames))

    def __len__(self) -> int:
        return self.shape[1]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            index = index[-1]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise InputError("AudioFileSignal supports contiguous slices only")
        start, stop, _ = index.indices(len(self))
        with sf.SoundFile(str(self.path)) as f:
            f.seek(start)
            data = f.read(max(stop - start, 0), dtype="float32", always_2d=True)
        return data.mean(axis=1, dtype=np.float32)[None]


def plan_windows(
    total: int, chunk: int, overlap: int, min_last: int | None = None
) -> list[Window]:
    """Cut ``total`` tokens into windows of ``chunk`` core tokens plus ``overlap`` each side.

    A last core shorter than ``min_last`` (default: ``overlap``) is merged into the
    previous window, so that no window runs on a sliver of audio.
    """
    if chunk < 1 or overlap < 0:
        raise InputError(f"bad window plan: chunk={chunk}, overlap={overlap}")
    min_last = overlap if min_last is None else min_last
    count = max(1, math.ceil(total / chunk))
    while count > 1 and total - (count - 1) * chunk < max(min_last, 1):
        count -= 1
    windows = []
    for k in range(count):
        core_start = k * chunk
        core_stop = total if k == count - 1 else (k + 1) * chunk
        windows.append(
            Window(
                max(0, core_start - overlap),
                min(total, core_stop + overlap),
                core_start,
                core_stop,
            )
        )
    return windows


def _crossfade(pieces: Iterable[tuple[Tensor, bool]], fade: int) -> Iterator[Tensor]:
    """Join pieces (B, T, ...) that overlap by ``fade`` steps, with linear ramps.

    Each piece but the first starts with ``fade`` steps shared with the previous piece,
    each but the last ends with ``fade`` steps shared with the next. Ramp weights sum to
    one at every step, so a constant signal passes unchanged.
    """
    carry = None
    ramp = None
    for piece, last in pieces:
        if carry is not None and fade:
            piece = piece.clone()
            piece[:, :fade] = piece[:, :fade] * ramp + carry
        if last:
            yield piece
            return
        if not fade:
            yield piece
            continue
        if ramp is None:
            shape = (1, fade) + (1,) * (piece.dim() - 2)
            steps = torch.arange(fade, dtype=piece.dtype, device=piece.device)
            ramp = ((steps + 0.5) / fade).reshape(shape)
        carry = piece[:, -fade:] * (1 - ramp)
        yield piece[:, :-fade]


def _fade_halves(fade: int) -> tuple[int, int]:
    """Steps of the fade before and after a boundary."""
    return fade // 2, fade - fade // 2


def _window_slices(windows: list[Window], fade: int, unit: int = 1):
    """For each window: (output offset of its first step, keep from, keep to, last)."""
    before, after = _fade_halves(fade)
    for k, w in enumerate(windows):
        last = k == len(windows) - 1
        lo = (w.core_start - w.start) * unit - (before if k > 0 else 0)
        hi = None if last else (w.core_stop - w.start) * unit + after
        yield w, lo, hi, last


def _as_rows(sig: Any) -> Any:
    """A (N,) or (B, N) tensor/array, or a lazy signal with ``shape`` and slicing."""
    if isinstance(sig, (np.ndarray, Tensor)) and sig.ndim == 1:
        return sig[None]
    if not hasattr(sig, "shape") or len(sig.shape) != 2:
        raise AudioError(
            "audio must have shape (samples,) or (batch, samples), or be a lazy signal "
            "such as AudioFileSignal"
        )
    return sig


def _read(sig: Any, start: int, stop: int) -> Tensor:
    piece = sig[:, start:stop]
    return piece if torch.is_tensor(piece) else torch.from_numpy(np.asarray(piece))


def _units(codec, chunk_seconds: float, overlap_seconds: float) -> tuple[int, int]:
    if not chunk_seconds > 0 or not overlap_seconds >= 0:
        raise InputError(
            f"chunk_seconds must be > 0 and overlap_seconds >= 0, got {chunk_seconds} "
            f"and {overlap_seconds}"
        )
    if overlap_seconds >= chunk_seconds:
        raise InputError(
            f"overlap_seconds ({overlap_seconds}) must be shorter than chunk_seconds "
            f"({chunk_seconds})"
        )
    rate = codec.token_rate
    return max(1, round(chunk_seconds * rate)), round(overlap_seconds * rate)


Progress = Any  # a callable (done, total) -> None, e.g. a tqdm update


def encode_long(
    codec,
    sig: Any,
    chunk_seconds: float = 30.0,
    overlap_seconds: float = 2.0,
    crossfade: bool = True,
    progress: Progress | None = None,
) -> Tensor:
    """Tokens of audio of any length, with memory bounded by the window length.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec` (causal or not).
    sig
        Waveform (N,) or (B, N) at ``codec.sample_rate_input``, as a tensor, an array
        (a memory map works) or a lazy :class:`AudioFileSignal`.
    chunk_seconds
        Core length of a window (causal models: audio per model call).
    overlap_seconds
        Context on each side of a window, and length of the cross-fade.
    crossfade
        Fade the latents of neighbouring windows; False cuts hard at the boundary.
    progress
        Called as ``progress(done, total)`` after every window.

    Returns
    -------
    Tokens (B, L), L as for ``codec.sig_to_toks`` on the whole input.
    """
    rows = _as_rows(sig)
    rate = getattr(sig, "sample_rate", codec.sample_rate_input)
    if rate != codec.sample_rate_input:
        raise AudioError(
            f"{getattr(sig, 'path', 'the input')} is at {rate} Hz but the model needs "
            f"{codec.sample_rate_input} Hz: resample it first (focalcodec.files.audio.resample)"
        )
    if codec.causal:
        return _encode_causal(codec, rows, chunk_seconds, progress)
    return _encode_windows(
        codec, rows, chunk_seconds, overlap_seconds, crossfade, progress
    )


def _encode_windows(
    codec, rows, chunk_seconds, overlap_seconds, crossfade, progress
) -> Tensor:
    chunk, overlap = _units(codec, chunk_seconds, overlap_seconds)
    hop = codec.hop_length
    total = rows.shape[1]
    windows = plan_windows(math.ceil(total / hop), chunk, overlap)
    # Fades longer than a core would overlap the next boundary's fade.
    fade = min(overlap, chunk) if crossfade else 0

    def pieces() -> Iterator[tuple[Tensor, bool]]:
        for k, (w, lo, hi, last) in enumerate(_window_slices(windows, fade)):
            # One token of extra input on the right: the convolutional front-end
            # needs more than one hop of samples for a window's last frame.
            stop = total if last else min(total, (w.stop + 1) * hop)
            with torch.inference_mode():
                lats = codec.sig_to_lats(_read(rows, w.start * hop, stop))
            if hi is not None and hi > lats.shape[1]:
                raise InputError(
                    f"overlap_seconds={overlap_seconds} leaves too little context for "
                    "the cross-fade: use a longer overlap"
                )
            if progress is not None:
                progress(k + 1, len(windows))
            yield lats[:, lo:hi], last

    lats = torch.cat(list(_crossfade(pieces(), fade)), 1)
    return codec.lats_to_toks(lats)


def _encode_causal(codec, rows: Any, chunk_seconds: float, progress) -> Tensor:
    steps = max(1, round(chunk_seconds * codec.sample_rate_input / codec.chunk_size))
    stream = StreamEncoder(codec, rows.shape[0], pad="none", chunks_per_step=steps)
    size = stream.step_size
    total = rows.shape[1]
    out = []
    for start in range(0, total, size):
        out.append(stream.encode(_read(rows, start, start + size)))
        if progress is not None:
            progress(start // size + 1, math.ceil(total / size))
    out.append(stream.flush())
    return torch.cat(out, 1)


def iter_decode_long(
    codec,
    toks: Tensor,
    chunk_seconds: float = 30.0,
    overlap_seconds: float = 2.0,
    matching_set: Tensor | None = None,
    topk: int = 4,
    output_length: int | None = None,
    progress: Progress | None = None,
) -> Iterator[Tensor]:
    """Decode tokens window by window, yielding finished audio (B, m) in order.

    Parameters are those of :func:`decode_long`; the pieces concatenate to its result.
    """
    toks = _check_toks(codec, toks)
    if codec.causal:
        pieces = _decode_causal(codec, toks, chunk_seconds, matching_set, topk)
    else:
        pieces = _decode_windows(
            codec, toks, chunk_seconds, overlap_seconds, matching_set, topk, progress
        )
    yield from _fit_stream(pieces, output_length)


def decode_long(
    codec,
    toks: Tensor,
    chunk_seconds: float = 30.0,
    overlap_seconds: float = 2.0,
    matching_set: Tensor | None = None,
    topk: int = 4,
    output_length: int | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Waveform of tokens of any length, with memory bounded by the window length.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec` (causal or not).
    toks
        Tokens (L,) or (B, L).
    chunk_seconds, overlap_seconds
        Window core and context, as in :func:`encode_long`; waveforms are cross-faded
        over ``overlap_seconds``.
    matching_set, topk
        kNN voice conversion, as in ``codec.toks_to_sig``.
    output_length
        Cut or extend (repeating the last sample) the result to this many samples.
    progress
        Called as ``progress(done, total)`` after every window.

    Returns
    -------
    Waveform (B, L * samples_per_token), or (B, output_length).
    """
    pieces = iter_decode_long(
        codec,
        toks,
        chunk_seconds,
        overlap_seconds,
        matching_set,
        topk,
        output_length,
        progress,
    )
    return torch.cat(list(pieces), 1)


def sig_to_sig_long(
    codec,
    sig: Any,
    chunk_seconds: float = 30.0,
    overlap_seconds: float = 2.0,
    matching_set: Tensor | None = None,
    topk: int = 4,
) -> Tensor:
    """Resynthesis of audio of any length: (B, N) -> (B, int(N * sr_out / sr_in))."""
    rows = _as_rows(sig)
    toks = encode_long(codec, rows, chunk_seconds, overlap_seconds)
    length = codec.output_length(rows.shape[1])
    return decode_long(
        codec, toks, chunk_seconds, overlap_seconds, matching_set, topk, length
    )


def _decode_windows(
    codec, toks, chunk_seconds, overlap_seconds, matching_set, topk, progress
) -> Iterator[Tensor]:
    chunk, overlap = _units(codec, chunk_seconds, overlap_seconds)
    windows = plan_windows(toks.shape[1], chunk, overlap)
    per_token = codec.output_hop_length
    fade = min(overlap, chunk) * per_token

    def pieces() -> Iterator[tuple[Tensor, bool]]:
        for k, (w, lo, hi, last) in enumerate(_window_slices(windows, fade, per_token)):
            with torch.inference_mode():
                sig = codec.toks_to_sig(
                    toks[:, w.start : w.stop], matching_set=matching_set, topk=topk
                )
            if progress is not None:
                progress(k + 1, len(windows))
            yield sig[:, lo:hi], last

    return _crossfade(pieces(), fade)


def _decode_causal(codec, toks, chunk_seconds, matching_set, topk) -> Iterator[Tensor]:
    steps = max(1, round(chunk_seconds * codec.sample_rate_input / codec.chunk_size))
    stream = StreamDecoder(codec, toks.shape[0], matching_set, topk, steps)
    for start in range(0, toks.shape[1], stream.step_size):
        yield stream.decode(toks[:, start : start + stream.step_size])
    yield stream.flush()


def _fit_stream(pieces: Iterable[Tensor], length: int | None) -> Iterator[Tensor]:
    """Pass pieces (B, m) through, cut or extended so that they total ``length``."""
    done = 0
    last = None
    for piece in pieces:
        if length is not None:
            piece = piece[:, : max(length - done, 0)]
        if piece.shape[1]:
            done += piece.shape[1]
            last = piece[:, -1:]
            yield piece
    if length is not None and done < length:
        if last is None:
            raise InputError("no tokens to decode")
        yield last.expand(-1, length - done).clone()


def _check_toks(codec, toks: Any) -> Tensor:
    if isinstance(toks, np.ndarray):
        toks = torch.from_numpy(toks)
    if (
        not torch.is_tensor(toks)
        or toks.is_floating_point()
        or toks.dim() not in (1, 2)
    ):
        raise InputError("tokens must be an integer tensor of shape (L,) or (B, L)")
    toks = toks[None] if toks.dim() == 1 else toks
    if toks.numel() == 0:
        raise InputError(
            f"no tokens to decode: tokens have shape {tuple(toks.shape)}; give at least "
            "one token per item"
        )
    if toks.min() < 0 or toks.max() >= codec.codebook_size:
        raise InputError(
            f"tokens must lie in [0, {codec.codebook_size}); got values from "
            f"{int(toks.min())} to {int(toks.max())}"
        )
    return toks.long()
