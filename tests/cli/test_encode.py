"""``focalcodec encode``, ``decode`` and ``info`` on real speech: round trips need all three."""

from __future__ import annotations

import io
import json
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from focalcodec.fcz import bitstream
from focalcodec.files.audio import load_audio
from focalcodec.pipeline import files
from support import NOISY, one_line_error, rel_files, run_cli


def test_encode_info_decode_real_speech(tmp_path, clips, audio_dir, model, capsys):
    fcz = tmp_path / "one.fcz"
    assert run_cli("encode", clips[0], "-o", fcz, "-m", model, "-q") == 0
    container = bitstream.loads(fcz.read_bytes())
    sig16, _ = load_audio(clips[0], 16000)
    assert container.num_samples == len(sig16)

    assert run_cli("info", fcz, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_tokens"] == len(container.toks)
    assert info["size"] == fcz.stat().st_size
    assert info["duration"] == pytest.approx(len(sig16) / 16000)

    wav = tmp_path / "one.wav"
    assert run_cli("decode", fcz, "-o", wav, "-m", model, "-q") == 0
    out = sf.info(wav)
    assert out.samplerate == 24000
    assert out.frames == int(len(sig16) * 24000 / 16000)


def test_48k_noisy_file_and_source_rate(tmp_path, audio_dir, model):
    fcz = tmp_path / "noisy.fcz"
    assert run_cli("encode", audio_dir / NOISY, "-o", fcz, "-m", model, "-q") == 0
    assert bitstream.loads(fcz.read_bytes()).header.source_sample_rate == 48000
    flac = tmp_path / "noisy.flac"
    args = ("decode", fcz, "-o", flac, "-m", model, "-q", "--sample-rate", "source")
    assert run_cli(*args) == 0
    original = sf.info(audio_dir / NOISY)
    decoded = sf.info(flac)
    assert decoded.samplerate == 48000 and decoded.format == "FLAC"
    assert abs(decoded.frames - original.frames) <= 3


def test_directory_mirroring_and_force(tmp_path, tree, model, capsys):
    out = tmp_path / "out"
    assert run_cli("encode", tree, "-o", out, "-m", model, "-q") == 0
    assert rel_files(out) == ["a/one.fcz", "b/c/two.fcz", "noisy48k.fcz"]
    wavs = tmp_path / "wavs"
    assert run_cli("decode", out, "-o", wavs, "-m", model, "-q") == 0
    assert rel_files(wavs) == ["a/one.wav", "b/c/two.wav", "noisy48k.wav"]

    before = (out / "a" / "one.fcz").read_bytes()
    capsys.readouterr()
    assert run_cli("encode", tree, "-o", out, "-m", model, "-q") == 1
    err = capsys.readouterr().err
    assert err.count("--force") == 3 and "Traceback" not in err
    assert (out / "a" / "one.fcz").read_bytes() == before
    (out / "a" / "one.fcz").write_bytes(b"stale")
    assert run_cli("encode", tree, "-o", out, "-m", model, "-q", "--force") == 0
    assert (out / "a" / "one.fcz").read_bytes() == before


def test_bad_file_in_batch_is_reported_and_skipped(tmp_path, tree, model, capsys):
    (tree / "bad.wav").write_bytes(b"RIFF garbage, not really a wav file")
    sf.write(tree / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    out = tmp_path / "out"
    assert run_cli("encode", tree, "-o", out, "-m", model, "-q") == 1
    err = capsys.readouterr().err
    assert "bad.wav" in err and "empty.wav" in err and "Traceback" not in err
    assert "2 of 5 files failed" in err
    assert rel_files(out) == ["a/one.fcz", "b/c/two.fcz", "noisy48k.fcz"]


def test_bad_containers_and_models(tmp_path, clips, golden_dir, model, capsys):
    fcz = tmp_path / "x.fcz"
    assert run_cli("encode", clips[1], "-o", fcz, "-m", model, "-q") == 0
    cut = tmp_path / "cut.fcz"
    cut.write_bytes(fcz.read_bytes()[:-3])
    checks = [
        (("decode", cut, "-o", tmp_path / "a.wav", "-m", model), "truncated"),
        (("info", cut), "truncated"),
        (("decode", fcz, "-o", tmp_path / "b.wav"), "--model"),
        (
            ("decode", fcz, "-o", tmp_path / "c.wav", "-m", golden_dir / "noncausal_vocos_50hz"),
            "made by",
        ),
        (("decode", fcz, "-o", tmp_path / "d.wav", "-m", "no_such_model"), "cannot load"),
        (("encode", tmp_path / "missing.wav", "-o", tmp_path / "e.fcz", "-m", model), "no such"),
    ]  # fmt: skip
    for args, message in checks:
        capsys.readouterr()
        quiet = () if args[0] == "info" else ("-q",)
        assert run_cli(*args, *quiet) == 1, args
        assert message in one_line_error(capsys, prefix=True), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.fcz", "x.fcz"]


def test_ctrl_c_leaves_no_partial_files(tmp_path, tree, model, monkeypatch):
    real = files.output_file
    calls = []

    @contextmanager
    def interrupted(dest, **kwargs):
        calls.append(dest)
        with real(dest, **kwargs) as out:
            if len(calls) == 2:
                out.file.write(b"FCZ partial")
                raise KeyboardInterrupt
            yield out

    monkeypatch.setattr(files, "output_file", interrupted)
    out = tmp_path / "out"
    assert run_cli("encode", tree, "-o", out, "-m", model, "-q") == 130
    # The first output is complete; the interrupted one left nothing, not even a temp.
    assert rel_files(out) == ["a/one.fcz"]
    bitstream.loads((out / "a" / "one.fcz").read_bytes())


def test_stdin_stdout_in_process(tmp_path, clips, model, monkeypatch):
    def pipe(args, data: bytes) -> bytes:
        stdin = io.TextIOWrapper(io.BytesIO(data))
        stdout = io.TextIOWrapper(io.BytesIO())
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        assert run_cli(*args, "-q") == 0
        return stdout.buffer.getvalue()

    fcz = pipe(("encode", "-", "-o", "-", "-m", model), clips[0].read_bytes())
    assert bitstream.loads(fcz).num_samples == sf.info(clips[0]).frames
    wav = pipe(("decode", "-", "-o", "-", "-m", model), fcz)
    assert wav[:4] == b"RIFF"
    assert sf.info(io.BytesIO(wav)).samplerate == 24000
