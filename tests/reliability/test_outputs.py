"""Every failure while reading or writing a file is one line from our own error classes.

Before: a full disk while writing audio printed ``Exception ignored from cffi callback``
and a traceback, then a bare AssertionError; an unreadable input was "System error."; a
decoder failing in the middle of a file raised libsndfile's own error; a 244-byte output
name failed because the temporary name was longer than NAME_MAX.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import focalcodec.files.atomic as atomic
import focalcodec.files.audio as audio
import focalcodec.files.soundio as soundio
from focalcodec.cli import main
from focalcodec.errors import AudioError, OutputError
from focalcodec.files.audio import AudioReader, AudioWriter, save_audio

MODEL = "causal_wavenext_50hz"


class FullDisk(io.BytesIO):
    """A file object on a device with ``room`` bytes left."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_a_full_disk_while_writing_audio_is_one_output_error(fmt, capsys):
    writer = AudioWriter(FullDisk(6000), 16000, format=fmt)
    tone = (0.3 * np.sin(np.arange(16000) * 0.3)).astype(np.float32)
    with pytest.raises(OutputError, match="No space left on device"):
        for _ in range(20):
            writer.write(tone)
        writer.close()
    err = capsys.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err


class FullFile:
    """A real file that refuses writes past ``room`` bytes, as a full disk does."""

    def __init__(self, fileobj, room: int) -> None:
        self._file, self.room = fileobj, room

    def write(self, data) -> int:
        if self._file.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def full_disk(monkeypatch, room: int = 4000) -> None:
    real = os.fdopen
    monkeypatch.setattr(
        atomic.os, "fdopen", lambda fd, mode: FullFile(real(fd, mode), room)
    )


def test_a_full_disk_through_an_atomic_output_names_it_and_leaves_nothing(
    tmp_path, monkeypatch
):
    full_disk(monkeypatch)
    out = tmp_path / "out" / "x.flac"
    with pytest.raises(OutputError, match=f"{out}: cannot write the output"):
        save_audio(out, 0.1 * np.random.default_rng(0).standard_normal(48000), 16000)
    assert list(out.parent.iterdir()) == []  # no partial file, no temporary file


def test_a_full_disk_through_the_cli_is_one_line(
    tmp_path, golden_dir, monkeypatch, capsys
):
    src = tmp_path / "a.wav"
    sf.write(src, 0.1 * np.random.default_rng(1).standard_normal(32000), 16000)
    full_disk(monkeypatch, room=2000)
    out = tmp_path / "a_out.wav"
    code = main(["resynth", str(src), "-o", str(out), "-m", str(golden_dir / MODEL)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "Exception ignored" not in err
    assert not out.exists()


def test_an_unreadable_input_says_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    real_open = open

    def deny(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    # As for a file of mode 000 (these tests run as root, who reads anything).
    monkeypatch.setattr(soundio, "open", deny, raising=False)
    with pytest.raises(AudioError, match="locked.wav: permission denied"):
        AudioReader(path)
    with pytest.raises(AudioError, match="permission denied"):
        audio.read_audio(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of mode 000")
def test_a_mode_000_input_says_permission_denied(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    path.chmod(0)
    with pytest.raises(AudioError, match="permission denied"):
        AudioReader(path)


def test_a_decoder_error_in_the_middle_of_a_file_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "long.flac"
    sf.write(path, 0.1 * np.ones(200_000, np.float32), 16000)
    reader = AudioReader(path, 16000)
    real_read = reader._file.read
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sf.LibsndfileError(1, "internal decoder error")
        return real_read(*args, **kwargs)

    monkeypatch.setattr(reader._file, "read", failing)
    with pytest.raises(AudioError, match="long.flac: cannot decode audio"):
        reader.read_all()


@pytest.mark.parametrize("length", [244, 250, 255])
def test_long_output_names_work(tmp_path, length, golden_dir):
    src = tmp_path / "a.wav"
    sf.write(src, 0.1 * np.random.default_rng(2).standard_normal(16000), 16000)
    out = tmp_path / ("n" * (length - 4) + ".fcz")
    assert len(out.name.encode()) == length
    assert (
        main(["encode", str(src), "-o", str(out), "-m", str(golden_dir / MODEL)]) == 0
    )
    assert out.stat().st_size > 20
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_cut_temporary_name_fits_and_keeps_multibyte_characters_whole(tmp_path):
    name = "é" * 127 + ".wav"  # 258 bytes: no file system takes it, cut or not
    prefix = atomic.temp_prefix(tmp_path, name, 13)
    assert len(prefix.encode()) + 13 <= 255
    prefix.encode("utf-8")  # no half character left
    assert prefix.startswith(".é") and "~" in prefix
    other = atomic.temp_prefix(tmp_path, "é" * 126 + "x.wav", 13)
    assert other != prefix  # long names that start alike keep apart
