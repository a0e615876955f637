"""libsndfile's side of audio files: rates per format, opening inputs, the write guard."""

from __future__ import annotations

import errno
import io

import numpy as np
import pytest
import soundfile as sf

from focalcodec.errors import AudioError, OutputError
from focalcodec.files.soundio import (
    MAX_SOURCE_RATE,
    MIN_SOURCE_RATE,
    WriteGuard,
    check_writable,
    open_sound,
)


@pytest.mark.parametrize(
    "fmt, good, bad",
    [
        ("WAV", [1, 768_000], [0, 768_001]),
        ("FLAC", [1, 655_350], [655_351]),
        ("OGG", [1, 192_000], [192_001, 400_000]),
        ("MP3", [8000, 44100, 48000], [7999, 16001, 96000]),
    ],
)
def test_each_writer_takes_its_rates_only(fmt, good, bad):
    for rate in good:
        check_writable(fmt, rate)
    for rate in bad:
        with pytest.raises(AudioError, match=f"{rate} Hz"):
            check_writable(fmt, rate)


def test_an_unknown_format_is_refused():
    with pytest.raises(AudioError, match="cannot write audio as format XYZ"):
        check_writable("XYZ", 16000)


def test_opening_names_the_problem(tmp_path):
    with pytest.raises(AudioError, match="nothing.wav: no such file"):
        open_sound(tmp_path / "nothing.wav", "nothing.wav")
    with pytest.raises(AudioError, match="is a directory"):
        open_sound(tmp_path, "dir")
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(AudioError, match="junk.wav: cannot decode audio"):
        open_sound(tmp_path / "junk.wav", "junk.wav")
    for rate, ok in ((MIN_SOURCE_RATE - 1, False), (MIN_SOURCE_RATE, True),
                     (MAX_SOURCE_RATE, True), (MAX_SOURCE_RATE + 1, False)):  # fmt: skip
        path = tmp_path / f"r{rate}.wav"
        sf.write(path, np.zeros(32, np.float32), rate)
        if ok:
            open_sound(path, path.name).close()
        else:
            with pytest.raises(AudioError, match=f"{rate} Hz is outside"):
                open_sound(path, path.name)


def test_the_guard_keeps_the_first_write_error_and_drops_the_rest():
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    guard = WriteGuard(Full())
    assert guard.write(b"abc") == 3 and guard.write(b"de") == 2  # as if written
    assert guard.tell() == 0 and guard.seek(10) == 0  # abandoned: inert
    with pytest.raises(OutputError, match="No space left on device"):
        guard.check()
    ok = WriteGuard(io.BytesIO())
    ok.write(b"xyz")
    ok.check()
    assert ok.tell() == 3
