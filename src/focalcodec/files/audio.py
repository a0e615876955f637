"""Reading, checking, resampling and writing audio files.

Everything here works on NumPy float32 waveforms in [-1, 1]. Files are decoded by
soundfile (libsndfile: wav, flac, ogg/vorbis, mp3 and more), several channels are averaged
to mono, and soxr converts to the rate the model expects. Problems with the input raise
:class:`focalcodec.errors.AudioError` with the file name in the message (an unreadable
file says "permission denied", a decoder failure in the middle of a file names the
file); a failed write raises :class:`focalcodec.errors.OutputError`.

Limits (``docs/reliability.md``): files are read at source rates of
:data:`MIN_SOURCE_RATE` to :data:`MAX_SOURCE_RATE` Hz (the range a ``.fcz`` header
records), refused when they are opened; :class:`AudioReader` decodes at most
:data:`PULL_VALUES` values per read, counting channels, and resamples at most that many
output samples per read, whatever the rates.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError, ClippingWarning
from .atomic import atomic_write
from .soundio import (
    DECODE_ERRORS,
    MAX_SOURCE_RATE,
    MIN_SOURCE_RATE,
    WriteGuard,
    check_writable,
    decode_error,
    open_sound,
)
from .sources import source_name

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_SOURCE_RATE",
    "MIN_SOURCE_RATE",
    "PULL_VALUES",
    "Audio",
    "AudioReader",
    "AudioWriter",
    "ClippingWarning",
    "check_signal",
    "check_waveform",
    "clipping_report",
    "audio_format",
    "check_writable",
    "load_audio",
    "read_audio",
    "resample",
    "save_audio",
    "write_audio",
]

# Audio containers by suffix, as soundfile format names: the one list of the suffixes
# the package reads (a directory input picks up these files) and writes.
_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".au": "AU",
}
AUDIO_SUFFIXES = tuple(_FORMATS)
# Values (frames x channels) decoded, and samples resampled, per read of AudioReader:
# 1 MB of float32 either way.
PULL_VALUES = 1 << 18
# Three or more consecutive samples this close to full scale (2 LSB of 16-bit PCM) are the
# flat tops that clipping leaves; single peaks at full scale are normal in mastered audio.
_FULL_SCALE = 1.0 - 2.0 / 32768
_CLIP_RUN = 3

Source = str | os.PathLike | BinaryIO


class Audio(NamedTuple):
    """A mono waveform and its sample rate.

    Attributes
    ----------
    sig
        Waveform, shape (N,), float32.
    sample_rate
        Sample rate in Hz.
    """

    sig: np.ndarray
    sample_rate: int


def _name(source: Source) -> str:
    return source_name(source)


def read_audio(source: Source) -> Audio:
    """Decode an audio file at its own sample rate, averaging channels to mono.

    Parameters
    ----------
    source
        Path or binary file object (a file object must be seekable for most formats).

    Returns
    -------
        The waveform, shape (N,), float32, and the file's sample rate.
    """
    name = _name(source)
    with open_sound(source, name) as sound:
        try:
            data = sound.read(dtype="float32", always_2d=True)
        except DECODE_ERRORS as exc:
            raise decode_error(name, exc) from exc
        rate = sound.samplerate
    # Averaging keeps the level of a dual-mono file unchanged.
    sig = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return Audio(check_signal(sig, name=name), int(rate))


def resample(sig: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Convert a waveform to another sample rate with soxr (high quality).

    Parameters
    ----------
    sig
        Waveform, shape (N,), float32.
    orig_rate, target_rate
        Sample rates in Hz.

    Returns
    -------
        Waveform, shape (round(N * target_rate / orig_rate),), float32.
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise AudioError(
            f"sample rates must be positive, got {orig_rate}->{target_rate}"
        )
    if orig_rate == target_rate:
        return sig
    out = soxr.resample(np.ascontiguousarray(sig), orig_rate, target_rate, "HQ")
    return out.astype(np.float32, copy=False)


def load_audio(source: Source, sample_rate: int | None = None) -> Audio:
    """Read a file, downmix it to mono and resample it.

    Parameters
    ----------
    source
        Path or binary file object.
    sample_rate
        Target rate in Hz, usually ``codec.sample_rate_input``; ``None`` keeps the
        file's rate.

    Returns
    -------
        The waveform, shape (N,), float32, and its sample rate. Warns with
        :class:`ClippingWarning` when the recording looks clipped.
    """
    sig, rate = read_audio(source)
    report = clipping_report(sig)
    if report:
        warnings.warn(f"{_name(source)}: {report}", ClippingWarning, stacklevel=2)
    if sample_rate is not None and sample_rate != rate:
        sig = resample(sig, rate, sample_rate)
        rate = sample_rate
    return Audio(sig, rate)


def check_waveform(
    sig: Any,
    minimum: int = 1,
    sample_rate: int | None = None,
    *,
    name: str | None = None,
) -> Any:
    """The one waveform check: (N,) or (B, N), a torch tensor or numpy array, comes back
    as (B, N) of the same kind.

    It must be floating point, finite, hold at least one item and at least ``minimum``
    samples per item; otherwise :class:`~focalcodec.errors.AudioError`, whose message
    starts with ``name`` when given (a file name) and gives the minimum in ms when
    ``sample_rate`` is known.
    """
    what = f"{name}: audio" if name else "audio"
    tensor = hasattr(sig, "is_floating_point")  # torch, without importing it here
    if not (tensor or isinstance(sig, np.ndarray)):
        raise AudioError(f"{what} must be a tensor or numpy array, got {type(sig)}")
    if sig.ndim == 1:
        sig = sig[None]
    if sig.ndim != 2:
        raise AudioError(
            f"{what} must have shape (samples,) or (batch, samples), got "
            f"{tuple(sig.shape)}; downmix multichannel audio first"
        )
    floating = (
        sig.is_floating_point() if tensor else np.issubdtype(sig.dtype, np.floating)
    )
    if not floating:
        raise AudioError(
            f"{what} must be floating point in [-1, 1], got {sig.dtype}; for int16 "
            "PCM divide by 32768"
        )
    if sig.shape[1] == 0 and sig.shape[0] and minimum <= 1:
        raise AudioError(f"{what} is empty (0 samples)")
    if sig.shape[0] == 0 or sig.shape[1] < minimum:
        need = f"need at least {minimum}"
        if sample_rate:
            need += f" ({1000 * minimum / sample_rate:g} ms)"
        raise AudioError(f"{what} is too short: {sig.shape[1]} samples, {need}")
    finite = sig.isfinite().all() if tensor else np.isfinite(sig).all()
    if not bool(finite):
        raise AudioError(f"{what} contains NaN or infinite samples")
    return sig


def check_signal(sig: np.ndarray, *, name: str = "signal") -> np.ndarray:
    """:func:`check_waveform` for one mono signal: (N,) or (1, N) -> (N,) float32."""
    arr = check_waveform(np.asarray(sig), name=name)
    if arr.shape[0] != 1:
        raise AudioError(
            f"{name}: expected a mono waveform (N,), got shape {arr.shape}"
        )
    return arr[0].astype(np.float32, copy=False)


def clipping_report(sig: np.ndarray) -> str | None:
    """Describe clipping in a waveform, or return ``None`` if there is none.

    Parameters
    ----------
    sig
        Waveform, shape (N,).
    """
    peak = float(np.abs(sig).max()) if sig.size else 0.0
    if peak > 1.0:
        return f"peak {peak:.3f} is above full scale (1.0); output will be clipped"
    hot = np.abs(sig) >= _FULL_SCALE
    if hot.sum() < _CLIP_RUN:
        return None
    # Length of the longest run of consecutive full-scale samples.
    edges = np.diff(np.concatenate([[0], hot.view(np.int8), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    if runs.max() >= _CLIP_RUN:
        return f"looks clipped ({int(hot.sum())} samples at full scale)"
    return None


def write_audio(
    fileobj: BinaryIO,
    sig: np.ndarray,
    sample_rate: int,
    *,
    format: str = "WAV",
    subtype: str | None = None,
) -> None:
    """Encode a waveform into an open binary file.

    Parameters
    ----------
    fileobj
        Binary file object opened for writing.
    sig
        Waveform, shape (N,), float.
    sample_rate
        Sample rate in Hz.
    format
        soundfile format name (``"WAV"``, ``"FLAC"``, ``"OGG"``, ``"MP3"``, ...).
    subtype
        soundfile subtype; ``None`` uses the format's default (16-bit PCM for wav/flac).
    """
    sig = check_signal(sig, name="output")
    peak = float(np.abs(sig).max())
    if peak > 1.0:
        warnings.warn(
            f"output peak {peak:.3f} is above full scale; clipping it to [-1, 1]",
            ClippingWarning,
            stacklevel=2,
        )
        sig = np.clip(sig, -1.0, 1.0)
    if not sf.check_format(format, subtype):
        raise AudioError(f"cannot write audio as format {format} subtype {subtype}")
    check_writable(format, sample_rate)
    # libsndfile wants a seekable file for some headers; a buffer also lets stdout work.
    buf = io.BytesIO()
    sf.write(buf, sig, sample_rate, format=format, subtype=subtype)
    fileobj.write(buf.getvalue())


def audio_format(path: str | os.PathLike) -> str:
    """The soundfile format name for an output path, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise AudioError(f"{path}: unknown audio suffix {suffix!r}; use one of {known}")
    return _FORMATS[suffix]


def save_audio(
    path: str | os.PathLike,
    sig: np.ndarray,
    sample_rate: int,
    *,
    force: bool = False,
    subtype: str | None = None,
) -> None:
    """Write a waveform to a file atomically; the format comes from the suffix.

    Parameters
    ----------
    path
        Output file (``.wav``, ``.flac``, ``.ogg``, ``.mp3``, ...).
    sig
        Waveform, shape (N,), float.
    sample_rate
        Sample rate in Hz.
    force
        Overwrite an existing file.
    subtype
        soundfile subtype, or ``None`` for the format default.
    """
    fmt = audio_format(path)
    with atomic_write(path, force=force) as fileobj:
        write_audio(fileobj, sig, sample_rate, format=fmt, subtype=subtype)


# ---------------------------------------------------------------------------------------
# Piece by piece: audio of any length in bounded memory
# ---------------------------------------------------------------------------------------

_READ_FRAMES = 1 << 16  # frames decoded per read: about 1.4 s at 48 kHz


class AudioReader:
    """An audio file read piece by piece, downmixed and resampled on the fly.

    Memory stays bounded whatever the file's length: samples are decoded in blocks,
    resampled with a streaming soxr resampler (which gives the samples of a one-shot
    :func:`resample`) and dropped once consumed. Use :meth:`blocks` for a sequential
    pass, or index it with slices whose starts never go backwards (``reader[:, a:b]``,
    shape (1, b - a)), which is what the windows of
    :func:`focalcodec.streaming.longform.encode_long` do.

    Parameters
    ----------
    source
        Path or seekable binary file object.
    sample_rate
        Rate to resample to (the model's input rate); None keeps the file's rate.
    name
        How messages call the source (default: its path).

    Attributes
    ----------
    source_rate
        The file's own rate in Hz.
    sample_rate
        The rate of the samples handed out.
    num_samples
        Their number, ``round(frames * sample_rate / source_rate)``.
    """

    def __init__(
        self, source: Source, sample_rate: int | None = None, *, name: str | None = None
    ) -> None:
        self.name = source_name(source, name)
        self._file = open_sound(source, self.name)
        self.source_rate = int(self._file.samplerate)
        self.sample_rate = int(sample_rate or self.source_rate)
        if self.sample_rate <= 0:
            self.close()
            raise AudioError(f"sample rate must be positive, got {self.sample_rate}")
        # Frames per read: PULL_VALUES values in, and at most PULL_VALUES samples out.
        self._frames = max(
            1,
            min(
                _READ_FRAMES,
                PULL_VALUES // max(int(self._file.channels), 1),
                PULL_VALUES * self.source_rate // self.sample_rate,
            ),
        )
        frames = int(self._file.frames)
        if frames <= 0:
            self.close()
            raise AudioError(f"{self.name}: the audio is empty (0 samples)")
        self.num_samples = round(frames * self.sample_rate / self.source_rate)
        self.shape = (1, self.num_samples)
        self._resampler = None
        if self.sample_rate != self.source_rate:
            self._resampler = soxr.ResampleStream(
                self.source_rate, self.sample_rate, 1, dtype="float32", quality="HQ"
            )
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # no request may start before this sample
        self._produced = 0
        self._done = False
        self.clipping: str | None = None

    def __len__(self) -> int:
        return self.num_samples

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _pull(self) -> bool:
        """Decode, downmix and resample one more block; False at the end of the file."""
        if self._done:
            return False
        try:
            data = self._file.read(self._frames, dtype="float32", always_2d=True)
        except DECODE_ERRORS as exc:
            raise decode_error(self.name, exc) from exc
        last = len(data) < self._frames
        sig = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        if len(sig) and not np.isfinite(sig).all():
            raise AudioError(f"{self.name}: the audio contains NaN or infinite samples")
        if self.clipping is None and len(sig):
            self.clipping = clipping_report(sig)
        if self._resampler is not None:
            try:
                sig = self._resampler.resample_chunk(sig, last=last)
            except (RuntimeError, ValueError) as exc:
                raise decode_error(self.name, exc) from exc
        # Hold the count to the planned one (a header's frame count may be a little
        # off for some formats): cut the excess, complete a short end with zeros.
        sig = sig[: self.num_samples - self._produced]
        if last:
            sig = np.pad(sig, (0, self.num_samples - self._produced - len(sig)))
        self._produced += len(sig)
        self._buffer = np.concatenate([self._buffer, sig.astype(np.float32)])
        self._done = last or self._produced >= self.num_samples
        return True

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):
            index = index[-1]
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise AudioError("AudioReader supports contiguous slices only")
        start, stop, _ = index.indices(self.num_samples)
        if start < self._start:
            raise AudioError(
                f"{self.name}: AudioReader reads forwards only (asked for sample "
                f"{start} after dropping those before {self._start})"
            )
        # Later requests start no earlier, so what lies before this one is dropped,
        # also while reading up to it: memory stays at one request plus one block.
        self._start = start
        while True:
            first = self._produced - len(self._buffer)  # index of buffer[0]
            self._buffer = self._buffer[min(max(start - first, 0), len(self._buffer)) :]
            if self._produced >= stop or not self._pull():
                break
        first = self._produced - len(self._buffer)
        return self._buffer[start - first : max(stop - first, 0)][None].copy()

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive pieces of ``size`` samples (the last may be shorter), (n,)."""
        for start in range(self._start, self.num_samples, size):
            yield self[:, start : start + size][0]

    def read_all(self) -> np.ndarray:
        """The whole signal, (N,) float32, as :func:`load_audio` would give it."""
        return self[:, self._start :][0]


class AudioWriter:
    """Write audio piece by piece into an open binary file (seekable: e.g. the file of
    :func:`~focalcodec.files.atomic.atomic_write`), resampling on the fly if asked.

    Samples beyond full scale are clipped to [-1, 1] with one
    :class:`ClippingWarning`.

    Parameters
    ----------
    fileobj
        Seekable binary file object opened for writing.
    sample_rate
        Rate of the pieces given to :meth:`write`.
    out_rate
        Rate written to the file (None: ``sample_rate``).
    format, subtype
        soundfile format name and subtype, as for :func:`write_audio`.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        sample_rate: int,
        out_rate: int | None = None,
        *,
        format: str = "WAV",
        subtype: str | None = None,
    ) -> None:
        out_rate = int(out_rate or sample_rate)
        if sample_rate <= 0 or out_rate <= 0:
            raise AudioError(f"sample rates must be positive, got {out_rate}")
        if not sf.check_format(format, subtype):
            raise AudioError(f"cannot write audio as format {format} subtype {subtype}")
        check_writable(format, out_rate)
        self._sink = WriteGuard(fileobj)
        self._file = sf.SoundFile(
            self._sink, "w", out_rate, 1, format=format, subtype=subtype
        )
        self._check()
        self._resampler = None
        if out_rate != sample_rate:
            self._resampler = soxr.ResampleStream(
                sample_rate, out_rate, 1, dtype="float32", quality="HQ"
            )
        self.frames = 0
        self._warned = False
        self._ended = False

    def write(self, sig: np.ndarray, last: bool = False) -> None:
        """Append a piece (n,); pass ``last=True`` with (or after) the final piece."""
        sig = np.asarray(sig, dtype=np.float32).reshape(-1)
        if len(sig) and not np.isfinite(sig).all():
            raise AudioError("output contains NaN or infinite samples")
        if self._resampler is not None and not self._ended:
            sig = self._resampler.resample_chunk(sig, last=last)
        self._ended = self._ended or last
        peak = float(np.abs(sig).max()) if len(sig) else 0.0
        if peak > 1.0:
            if not self._warned:
                warnings.warn(
                    f"output peak {peak:.3f} is above full scale; clipping it to "
                    "[-1, 1]",
                    ClippingWarning,
                    stacklevel=2,
                )
                self._warned = True
            sig = np.clip(sig, -1.0, 1.0)
        if len(sig):
            self._file.write(sig)
            self._check()
            self.frames += len(sig)

    def close(self) -> None:
        """Finish the file (writes the header's final sizes)."""
        if not self._ended:
            self.write(np.zeros(0, dtype=np.float32), last=True)
        self._file.close()
        self._check()

    def _check(self) -> None:
        """Raise a write error once libsndfile is done with the file (closed here, so
        that nothing touches the output again, not even garbage collection)."""
        if self._sink.error is None:
            return
        try:
            self._file.close()
        except Exception:  # the output is abandoned; its own error is what matters
            pass
        self._sink.check()
