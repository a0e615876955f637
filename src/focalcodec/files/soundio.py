"""libsndfile's side of audio files: what each format takes, and clear errors.

The rates each writer accepts (:func:`check_writable`: a rate libvorbis would crash on
is refused before any work), the rates an input may have (:data:`MIN_SOURCE_RATE` to
:data:`MAX_SOURCE_RATE`), opening an input so that every problem is one
:class:`~focalcodec.errors.AudioError` naming it (:func:`open_sound`: a missing or
unreadable file, "permission denied" instead of libsndfile's "System error."), and the
file object libsndfile writes through (:class:`WriteGuard`: a failed write, a full disk,
becomes one :class:`~focalcodec.errors.OutputError` instead of an exception lost in a
C callback). Used by :mod:`focalcodec.files.audio`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import soundfile as sf

from ..errors import AudioError, FocalCodecError, OutputError
from ..fcz.limits import MAX_RATE, MIN_RATE
from .sources import Source

__all__ = [
    "DECODE_ERRORS",
    "MAX_SOURCE_RATE",
    "MIN_SOURCE_RATE",
    "WriteGuard",
    "check_writable",
    "decode_error",
    "open_sound",
]

# Output rates each writer handles, in Hz. libvorbis crashes the process (SIGSEGV) from
# about 210 kHz up, libFLAC refuses more than 655350 Hz, and MPEG audio has nine rates.
_WRITE_RATES: dict[str, tuple[int, int]] = {
    "WAV": (1, 768_000),
    "AIFF": (1, 768_000),
    "AU": (1, 768_000),
    "FLAC": (1, 655_350),
    "OGG": (1, 192_000),
}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# Rates an input file may have: those a .fcz header can record as the source rate.
# Below, no speech is left to code (and resampling 1 Hz to 16 kHz multiplies the data
# 16000 times); above, it is not audio any recorder makes.
MIN_SOURCE_RATE, MAX_SOURCE_RATE = MIN_RATE, MAX_RATE


DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError)


def decode_error(name: str, exc: BaseException) -> AudioError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return AudioError(f"{name}: cannot decode audio ({detail})")


def open_sound(source: Source, name: str) -> sf.SoundFile:
    """Open an input for decoding; every problem is an AudioError naming it."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, not an audio file")
        try:
            # libsndfile says only "System error." when it cannot open a file.
            with open(path, "rb"):
                pass
        except PermissionError:
            raise AudioError(f"{name}: permission denied (cannot read it)") from None
        except OSError as exc:
            raise AudioError(f"{name}: cannot open ({exc.strerror or exc})") from None
    try:
        sound = sf.SoundFile(source)
    except DECODE_ERRORS as exc:
        raise decode_error(name, exc) from exc
    rate = int(sound.samplerate)
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        sound.close()
        raise AudioError(
            f"{name}: sample rate {rate} Hz is outside [{MIN_SOURCE_RATE}, "
            f"{MAX_SOURCE_RATE}] Hz; resample the file first (e.g. sox IN -r 48000 OUT)"
        )
    return sound


def check_writable(format: str, sample_rate: int) -> None:
    """Refuse, before any work, an output that the writer cannot make (or that would
    crash it): an unknown format or a rate it does not take. Raises
    :class:`~focalcodec.errors.AudioError`."""
    if format == "MP3":
        if sample_rate not in _MP3_RATES:
            rates = ", ".join(str(r) for r in _MP3_RATES)
            raise AudioError(
                f"mp3 output cannot be written at {sample_rate} Hz; it takes {rates} Hz"
            )
        return
    if format not in _WRITE_RATES:
        raise AudioError(f"cannot write audio as format {format}")
    low, high = _WRITE_RATES[format]
    if not low <= sample_rate <= high:
        raise AudioError(
            f"{format.lower()} output cannot be written at {sample_rate} Hz; it takes "
            f"{low} to {high} Hz"
        )


class WriteGuard:
    """The file object libsndfile writes through, keeping the first write error.

    soundfile calls ``write`` from a C callback, where an exception cannot propagate
    (it is printed as "Exception ignored from cffi callback" and libsndfile fails
    later with a bare AssertionError). So the error is kept, further writes are
    dropped, and :meth:`check` raises it as one :class:`OutputError` after the call.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._file = fileobj
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self._file.write(data)
            except OSError as exc:
                self.error = exc
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self.error is not None:
            return 0  # abandoned: libsndfile may still seek while it closes
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return 0 if self.error is not None else self._file.tell()

    def check(self) -> None:
        """Raise the first write error, if there was one."""
        exc = self.error
        if exc is None:
            return
        if isinstance(exc, FocalCodecError):
            raise exc
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"cannot write the audio output ({reason})") from exc

    def __getattr__(self, name: str):
        return getattr(self._file, name)
