"""Tests for audio I/O (focalcodec.files.audio) and atomic outputs (focalcodec.files.atomic)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.errors import AudioError
from focalcodec.files import audio
from focalcodec.files.atomic import OutputExistsError, atomic_write


@pytest.fixture(scope="module")
def audio_dir(data_dir: Path) -> Path:
    return data_dir / "audio"


@pytest.fixture(scope="module")
def manifest(audio_dir: Path) -> list[dict]:
    lines = (audio_dir / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_real_speech_matches_manifest(manifest, audio_dir):
    item = next(m for m in manifest if m["source"] == "librispeech")
    sig, rate = audio.read_audio(audio_dir / item["path"])
    assert rate == item["sample_rate"] == 16000
    assert sig.dtype == np.float32 and sig.ndim == 1
    assert len(sig) / rate == pytest.approx(item["duration"], abs=0.01)
    assert 0 < np.abs(sig).max() <= 1.0


def test_48k_noisy_file_is_resampled(manifest, audio_dir):
    item = next(m for m in manifest if m["sample_rate"] == 48000)
    raw, rate = audio.read_audio(audio_dir / item["path"])
    sig, new_rate = audio.load_audio(audio_dir / item["path"], 16000)
    assert (rate, new_rate) == (48000, 16000)
    assert abs(len(sig) - len(raw) / 3) <= 1


def test_resample_keeps_frequency_and_level():
    x = sine(1000.0, 48000, 1.0)
    y = audio.resample(x, 48000, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(14000)))
    peak_hz = np.argmax(spectrum) * 16000 / 14000
    assert abs(peak_hz - 1000.0) < 2.0
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), 0.01)
    assert audio.resample(x, 16000, 16000) is x
    with pytest.raises(AudioError):
        audio.resample(x, 0, 16000)


def test_stereo_is_averaged(tmp_path):
    left, right = sine(300, 16000, 0.5), sine(700, 16000, 0.5, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    sig, rate = audio.read_audio(path)
    np.testing.assert_allclose(sig, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_save_and_reload_each_format(tmp_path, suffix):
    x = sine(440, 16000, 1.0)
    path = tmp_path / f"out{suffix}"
    audio.save_audio(path, x, 16000)
    y, rate = audio.read_audio(path)
    assert rate == 16000
    if suffix in (".wav", ".flac"):
        # 16-bit PCM: within half an LSB.
        np.testing.assert_allclose(y, x, atol=1 / 32768)
    else:
        # Lossy formats may add encoder delay/padding; the length must stay close.
        assert abs(len(y) - len(x)) < 2000


def test_save_refuses_overwrite_without_force(tmp_path):
    path = tmp_path / "a.wav"
    audio.save_audio(path, sine(440, 16000, 0.1), 16000)
    with pytest.raises(OutputExistsError, match="--force"):
        audio.save_audio(path, np.zeros(10, dtype=np.float32), 16000)
    audio.save_audio(path, np.zeros(10, dtype=np.float32), 16000, force=True)
    assert len(audio.read_audio(path).sig) == 10
    with pytest.raises(AudioError, match="unknown audio suffix"):
        audio.save_audio(tmp_path / "a.xyz", np.zeros(10, dtype=np.float32), 16000)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "cannot decode"),
        (b"this is not audio at all" * 10, "cannot decode"),
    ],
)
def test_unreadable_inputs(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as info:
        audio.load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_directory_and_empty_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        audio.read_audio(tmp_path)
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        audio.read_audio(path)


@pytest.mark.parametrize(
    "sig, message",
    [
        (np.zeros((2, 100), dtype=np.float32), "mono"),
        (np.zeros(100, dtype=np.int16), "floating point"),
        (np.array([0.0, np.nan], dtype=np.float32), "NaN"),
        (np.array([0.0, np.inf], dtype=np.float32), "NaN or infinite"),
        (np.zeros(0, dtype=np.float32), "empty"),
    ],
)
def test_check_signal_rejects(sig, message):
    with pytest.raises(AudioError, match=message):
        audio.check_signal(sig)


def test_check_signal_accepts_batch_of_one():
    out = audio.check_signal(np.zeros((1, 5), dtype=np.float64))
    assert out.shape == (5,) and out.dtype == np.float32


def test_clipping_warnings(tmp_path, manifest, audio_dir):
    clipped = np.clip(sine(200, 16000, 0.5, amp=2.0), -1.0, 1.0)
    path = tmp_path / "clipped.wav"
    sf.write(path, clipped, 16000)
    with pytest.warns(audio.ClippingWarning, match="clipped"):
        audio.load_audio(path, 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.load_audio(audio_dir / manifest[0]["path"], 16000)
    with pytest.warns(audio.ClippingWarning, match="above full scale"):
        audio.save_audio(tmp_path / "hot.wav", sine(200, 16000, 0.1, amp=1.5), 16000)
    assert np.abs(audio.read_audio(tmp_path / "hot.wav").sig).max() <= 1.0


def test_read_from_file_object(manifest, audio_dir):
    path = audio_dir / manifest[0]["path"]
    with open(path, "rb") as fileobj:
        sig, rate = audio.read_audio(fileobj)
    np.testing.assert_array_equal(sig, audio.read_audio(path).sig)


# ------------------------------------------------------------------------ atomic


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc):
            with atomic_write(path) as fileobj:
                fileobj.write(b"partial")
                raise exc()
        assert not path.exists()
        assert os.listdir(path.parent) == []


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "out.bin"
    with atomic_write(path) as fileobj:
        fileobj.write(b"one")
    assert path.read_bytes() == b"one"
    mask = os.umask(0)
    os.umask(mask)
    # Same permissions as a file made by open(), not mkstemp's private 0600.
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(OutputExistsError):
        with atomic_write(path) as fileobj:
            fileobj.write(b"two")
    with atomic_write(path, force=True) as fileobj:
        fileobj.write(b"two")
    assert path.read_bytes() == b"two"


def test_atomic_write_never_replaces_an_input(tmp_path):
    path = tmp_path / "in.wav"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="own input"):
        with atomic_write(path, force=True, inputs=(path,)):
            pass
    assert path.read_bytes() == b"precious"
