"""Rates and formats: refused before any work when a reader or writer cannot take them,
never a crash.

``resynth ... --sample-rate 768000`` to ``.ogg`` killed the process with SIGSEGV
(libvorbis, from about 210 kHz up); a WAV at 1 Hz made the reader resample 65,536 source
frames per block (16000x: gigabytes from kilobytes), and a 1 MHz WAV was refused only
after encoding. Every writer runs here in a child process at the extreme rates it
accepts, so that a segmentation fault fails the test instead of ending the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from focalcodec.cli import main
from focalcodec.errors import AudioError
from focalcodec.files.audio import (
    MAX_SOURCE_RATE,
    MIN_SOURCE_RATE,
    AudioReader,
    check_writable,
)

MODEL = "causal_wavenext_50hz"
# The extreme rates each writer accepts (docs/reliability.md), chosen here.
EXTREMES = {
    "WAV": (1000, 768_000),
    "FLAC": (1000, 655_350),
    "OGG": (1000, 192_000),
    "MP3": (8000, 48_000),
    "AIFF": (1000, 768_000),
    "AU": (1000, 768_000),
}
REFUSED = {
    "FLAC": 655_351,
    "OGG": 192_001,
    "MP3": 44_000,
}

CHILD = textwrap.dedent(
    """
    import io, sys
    import numpy as np
    import soundfile as sf
    from focalcodec.files.audio import AudioWriter, write_audio
    fmt, rate = sys.argv[1], int(sys.argv[2])
    sig = (0.1 * np.sin(np.arange(rate // 4) * 0.05)).astype(np.float32)
    buf = io.BytesIO()
    write_audio(buf, sig, rate, format=fmt)
    out = io.BytesIO()
    writer = AudioWriter(out, 24000, rate, format=fmt)
    tone = (0.1 * np.sin(np.arange(24000) * 0.05)).astype(np.float32)
    for piece in np.array_split(tone, 3):
        writer.write(piece)
    writer.close()
    for data, frames in ((buf, rate // 4), (out, rate)):
        data.seek(0)
        info = sf.info(data)
        # MPEG audio pads to whole frames of 1152 samples.
        assert info.samplerate == rate and abs(info.frames - frames) <= 2304, info
    print("ok")
    """
)


def child(*args: object, code: str = CHILD) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "fmt, rate",
    [(fmt, rate) for fmt, pair in EXTREMES.items() for rate in pair],
)
def test_every_format_writes_at_its_extreme_rates(fmt, rate):
    check_writable(fmt, rate)
    done = child(fmt, rate)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("fmt, rate", sorted(REFUSED.items()) + [("OGG", 768_000)])
def test_rates_a_writer_cannot_take_are_refused(fmt, rate):
    with pytest.raises(AudioError, match=f"{rate} Hz"):
        check_writable(fmt, rate)


@pytest.mark.parametrize("rate", [400_000, 768_000])
def test_resynth_to_ogg_at_a_crashing_rate_is_a_usage_error(
    rate, tmp_path, golden_dir, capsys
):
    """The reported SIGSEGV: refused before the model loads, exit 2, one line."""
    src = tmp_path / "a.wav"
    sf.write(src, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    out = tmp_path / "a.ogg"
    args = ["resynth", str(src), "-o", str(out), "--sample-rate", str(rate)]
    assert main([*args, "-m", str(golden_dir / MODEL), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{rate} Hz" in err
    assert not out.exists()


def test_source_rate_output_is_checked_before_encoding(tmp_path, golden_dir, capsys):
    """--sample-rate source with a 400 kHz input and .ogg: refused before encoding."""
    import focalcodec.pipeline.files as files

    src = tmp_path / "hi.wav"
    sf.write(src, np.zeros(400_000, np.float32), 400_000)
    out = tmp_path / "hi.ogg"
    calls = []
    original = files.encode_batch

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    files.encode_batch = spy
    try:
        args = ["resynth", str(src), "-o", str(out), "--sample-rate", "source"]
        assert main([*args, "-m", str(golden_dir / MODEL), "-q"]) == 1
    finally:
        files.encode_batch = original
    assert not calls and not out.exists()
    assert "400000 Hz" in capsys.readouterr().err


@pytest.mark.parametrize("rate", [1, 8, 999, 768_001, 1_000_000])
def test_input_rates_outside_the_bounds_are_refused_on_opening(rate, tmp_path):
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, np.zeros(64, np.float32), rate)
    with pytest.raises(AudioError, match=f"{rate} Hz is outside"):
        AudioReader(path, 16000)


def test_a_1mhz_wav_is_refused_before_encoding(tmp_path, golden_dir, capsys):
    path = tmp_path / "mhz.wav"
    sf.write(path, np.zeros(10_000, np.float32), 1_000_000)
    out = tmp_path / "mhz.fcz"
    assert (
        main(["encode", str(path), "-o", str(out), "-m", str(golden_dir / MODEL)]) == 1
    )
    err = capsys.readouterr().err
    assert "1000000 Hz is outside" in err and not out.exists()


READ_PEAK = textwrap.dedent(
    """
    import resource, sys
    from focalcodec.files.audio import AudioReader
    path, rate = sys.argv[1], int(sys.argv[2])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with AudioReader(path, rate) as reader:
        total = sum(len(b) for b in reader.blocks(rate))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(total, (after - before) // 1024)
    """
)


@pytest.mark.parametrize(
    "source_rate, channels, frames, target",
    [
        (MIN_SOURCE_RATE, 1, 200_000, MAX_SOURCE_RATE),  # 768x upsampling
        (16_000, 1024, 24_000, 16_000),  # 1024 channels: 65536 frames were 256 MB
    ],
)
def test_reading_stays_bounded_at_extreme_ratios_and_channel_counts(
    source_rate, channels, frames, target, tmp_path
):
    path = tmp_path / "x.wav"
    sig = np.zeros((frames, channels), np.int16)
    sf.write(path, sig, source_rate, subtype="PCM_16")
    done = child(path, target, code=READ_PEAK)
    assert done.returncode == 0, done.stderr[-2000:]
    total, grown_mb = map(int, done.stdout.split())
    assert total == round(frames * target / source_rate)
    # One block of output (target samples) plus a read of PULL_VALUES values:
    # a few MB; before, one read of 65536 frames was 150 MB (1000 -> 768000 Hz)
    # or 256 MB (1024 channels).
    assert grown_mb < 60, grown_mb


def test_file_rates_inside_the_bounds_are_read(tmp_path):
    for rate in (MIN_SOURCE_RATE, MAX_SOURCE_RATE):
        path = tmp_path / f"ok{rate}.wav"
        sf.write(path, 0.1 * np.ones(rate // 10, np.float32), rate)
        with AudioReader(path, 16000) as reader:
            assert len(reader.read_all()) == 1600
