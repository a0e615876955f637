"""End-to-end tests of the ``focalcodec`` command line on real speech and golden models."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.cli import app, encode, main
from focalcodec.io import atomic, bitstream
from focalcodec.io.audio import load_audio

CLEAN = [
    "librispeech/dev-clean/84/84-121123-0000.flac",  # 2.09 s
    "multilingual/it/agent-loggedoff.flac",  # 1.33 s
]
REFERENCES = [
    "multilingual/it/agent-loginok.flac",
    "multilingual/it/agent-newlocation.flac",
]
NOISY = "noisy/p257_003.flac"  # 48 kHz
MODEL = "causal_wavenext_50hz"  # 16 kHz in, 24 kHz out: exercises both rates


@pytest.fixture(scope="module")
def audio_dir(data_dir: Path) -> Path:
    return data_dir / "audio"


@pytest.fixture(scope="module")
def model(golden_dir: Path) -> str:
    return str(golden_dir / MODEL)


@pytest.fixture(scope="module")
def clips(audio_dir: Path) -> list[Path]:
    return [audio_dir / c for c in CLEAN]


@pytest.fixture
def tree(tmp_path: Path, clips: list[Path], audio_dir: Path) -> Path:
    """in/a/one.flac, in/b/c/two.flac, in/noisy48k.flac and a non-audio file."""
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "b" / "c").mkdir(parents=True)
    shutil.copy(clips[0], root / "a" / "one.flac")
    shutil.copy(clips[1], root / "b" / "c" / "two.flac")
    shutil.copy(audio_dir / NOISY, root / "noisy48k.flac")
    (root / "notes.txt").write_text("not audio")
    return root


def run(*args: str) -> int:
    return main([str(a) for a in args])


def rel_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    )


# ------------------------------------------------------------------------ help/models


def test_help_lists_every_subcommand(capsys):
    assert run("--help") == 0
    out = capsys.readouterr().out
    for name in app.VERBS:
        assert name in out
    assert run() == 2


def test_models_lists_the_packaged_models(capsys):
    assert run("models", "--json") == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    # Bitrates from the FocalCodec README table (SPEC section 4).
    expected = {
        "focalcodec_50hz": 650,
        "focalcodec_25hz": 325,
        "focalcodec_12_5hz": 162.5,
        "focalcodec_50hz_65k_causal": 800,
        "focalcodec_50hz_4k_causal": 600,
        "focalcodec_50hz_2k_causal": 550,
    }
    assert {n: r["bitrate"] for n, r in rows.items()} == expected
    assert rows["focalcodec_50hz_2k_causal"]["latency_ms"] == 80.0
    assert rows["focalcodec_50hz_2k_causal"]["sample_rate_output"] == 24000
    assert rows["focalcodec_50hz"]["latency_ms"] is None
    assert run("models") == 0
    assert "focalcodec_12_5hz" in capsys.readouterr().out


def test_external_subcommands(monkeypatch, capsys):
    monkeypatch.setitem(
        app.VERBS, "export", app.Verb("_missing_module", "export", "onnx")
    )
    assert run("export", "x") == 2
    err = capsys.readouterr().err
    assert "pip install 'focalcodec[onnx]'" in err and "Traceback" not in err

    fake = types.ModuleType("focalcodec.cli._fake_stream")
    fake.add_arguments = lambda parser: parser.add_argument("--value", type=int)
    fake.run = lambda args: args.value
    monkeypatch.setitem(sys.modules, "focalcodec.cli._fake_stream", fake)
    monkeypatch.setitem(app.VERBS, "stream", app.Verb("_fake_stream", "stream", None))
    assert run("stream", "--value", "7") == 7


# ------------------------------------------------------------------------ encode/decode


def test_encode_info_decode_real_speech(tmp_path, clips, audio_dir, model, capsys):
    fcz = tmp_path / "one.fcz"
    assert run("encode", clips[0], "-o", fcz, "-m", model, "-q") == 0
    container = bitstream.loads(fcz.read_bytes())
    sig16, _ = load_audio(clips[0], 16000)
    assert container.num_samples == len(sig16)

    assert run("info", fcz, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_tokens"] == len(container.toks)
    assert info["size"] == fcz.stat().st_size
    assert info["duration"] == pytest.approx(len(sig16) / 16000)

    wav = tmp_path / "one.wav"
    assert run("decode", fcz, "-o", wav, "-m", model, "-q") == 0
    out = sf.info(wav)
    assert out.samplerate == 24000
    assert out.frames == int(len(sig16) * 24000 / 16000)


def test_48k_noisy_file_and_source_rate(tmp_path, audio_dir, model):
    fcz = tmp_path / "noisy.fcz"
    assert run("encode", audio_dir / NOISY, "-o", fcz, "-m", model, "-q") == 0
    assert bitstream.loads(fcz.read_bytes()).header.source_sample_rate == 48000
    flac = tmp_path / "noisy.flac"
    args = ("decode", fcz, "-o", flac, "-m", model, "-q", "--sample-rate", "source")
    assert run(*args) == 0
    original = sf.info(audio_dir / NOISY)
    decoded = sf.info(flac)
    assert decoded.samplerate == 48000 and decoded.format == "FLAC"
    assert abs(decoded.frames - original.frames) <= 3


def test_directory_mirroring_and_force(tmp_path, tree, model, capsys):
    out = tmp_path / "out"
    assert run("encode", tree, "-o", out, "-m", model, "-q") == 0
    assert rel_files(out) == ["a/one.fcz", "b/c/two.fcz", "noisy48k.fcz"]
    wavs = tmp_path / "wavs"
    assert run("decode", out, "-o", wavs, "-m", model, "-q") == 0
    assert rel_files(wavs) == ["a/one.wav", "b/c/two.wav", "noisy48k.wav"]

    before = (out / "a" / "one.fcz").read_bytes()
    capsys.readouterr()
    assert run("encode", tree, "-o", out, "-m", model, "-q") == 1
    err = capsys.readouterr().err
    assert err.count("--force") == 3 and "Traceback" not in err
    assert (out / "a" / "one.fcz").read_bytes() == before
    (out / "a" / "one.fcz").write_bytes(b"stale")
    assert run("encode", tree, "-o", out, "-m", model, "-q", "--force") == 0
    assert (out / "a" / "one.fcz").read_bytes() == before


def test_bad_file_in_batch_is_reported_and_skipped(tmp_path, tree, model, capsys):
    (tree / "bad.wav").write_bytes(b"RIFF garbage, not really a wav file")
    sf.write(tree / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    out = tmp_path / "out"
    assert run("encode", tree, "-o", out, "-m", model, "-q") == 1
    err = capsys.readouterr().err
    assert "bad.wav" in err and "empty.wav" in err and "Traceback" not in err
    assert "2 of 5 files failed" in err
    assert rel_files(out) == ["a/one.fcz", "b/c/two.fcz", "noisy48k.fcz"]


def test_bad_containers_and_models(tmp_path, clips, golden_dir, model, capsys):
    fcz = tmp_path / "x.fcz"
    assert run("encode", clips[1], "-o", fcz, "-m", model, "-q") == 0
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
        assert run(*args, *quiet) == 1, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.fcz", "x.fcz"]


@pytest.mark.parametrize(
    "args",
    [
        ("decode", "x.fcz", "-o", "noext"),
        ("decode", "x.fcz", "y.fcz", "-o", "-"),
        ("decode", "x.fcz", "-o", "a.wav", "--format", "flac"),
        ("encode", "x.wav", "-o", "y.fcz", "--device", "nonsense"),
        ("vc", "x.wav", "-o", "y.wav"),
        ("encode", "x.wav"),
    ],
)
def test_usage_errors(tmp_path, monkeypatch, args, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.wav").write_bytes(b"")
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


def test_ctrl_c_leaves_no_partial_files(tmp_path, tree, model, monkeypatch):
    real = encode.write_output
    calls = []

    def interrupted(item, data, *, force):
        calls.append(item)
        if len(calls) == 2:
            with atomic.atomic_write(item.dst, force=force) as fileobj:
                fileobj.write(data[:10])
                raise KeyboardInterrupt
        real(item, data, force=force)

    monkeypatch.setattr(encode, "write_output", interrupted)
    out = tmp_path / "out"
    assert run("encode", tree, "-o", out, "-m", model, "-q") == 130
    # The first output is complete; the interrupted one left nothing, not even a temp.
    assert rel_files(out) == ["a/one.fcz"]
    bitstream.loads((out / "a" / "one.fcz").read_bytes())


def test_stdin_stdout_in_process(tmp_path, clips, model, monkeypatch):
    def pipe(args, data: bytes) -> bytes:
        stdin = io.TextIOWrapper(io.BytesIO(data))
        stdout = io.TextIOWrapper(io.BytesIO())
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        assert run(*args, "-q") == 0
        return stdout.buffer.getvalue()

    fcz = pipe(("encode", "-", "-o", "-", "-m", model), clips[0].read_bytes())
    assert bitstream.loads(fcz).num_samples == sf.info(clips[0]).frames
    wav = pipe(("decode", "-", "-o", "-", "-m", model), fcz)
    assert wav[:4] == b"RIFF"
    assert sf.info(io.BytesIO(wav)).samplerate == 24000


def test_python_m_subprocess(tmp_path, clips, model):
    """`python -m focalcodec` with stdin/stdout pipes, as a shell user would run it."""
    with open(clips[1], "rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "focalcodec", "encode", "-", "-o", "-", "-m", model],
            stdin=stdin,
            capture_output=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    ref = tmp_path / "ref.fcz"
    assert run("encode", clips[1], "-o", ref, "-m", model, "-q") == 0
    np.testing.assert_array_equal(
        bitstream.loads(proc.stdout).toks, bitstream.loads(ref.read_bytes()).toks
    )


# ------------------------------------------------------------------------ resynth / vc


def test_resynth(tmp_path, tree, model):
    out = tmp_path / "re"
    args = (
        "resynth",
        tree / "a",
        tree / "noisy48k.flac",
        "-o",
        out,
        "--format",
        "flac",
    )
    assert run(*args, "-m", model, "-q") == 0
    assert rel_files(out) == ["noisy48k.flac", "one.flac"]
    sig16, _ = load_audio(tree / "a" / "one.flac", 16000)
    assert sf.info(out / "one.flac").frames == int(len(sig16) * 1.5)


def test_vc_with_saved_bank(tmp_path, tree, audio_dir, model, golden_dir, capsys):
    bank = tmp_path / "spk.safetensors"
    refs = [audio_dir / r for r in REFERENCES]
    src = tree / "a" / "one.flac"
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    args = ("vc", src, "-o", a, "-r", *refs, "--save-bank", bank, "-m", model, "-q")
    assert run(*args) == 0
    assert bank.exists()
    assert run("vc", src, "-o", b, "--bank", bank, "-m", model, "-q") == 0
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])
    sig16, _ = load_audio(src, 16000)
    assert sf.info(a).frames == int(len(sig16) * 1.5)
    # A .fcz source gives the same conversion as the audio it came from.
    fcz, c = tmp_path / "one.fcz", tmp_path / "c.wav"
    assert run("encode", src, "-o", fcz, "-m", model, "-q") == 0
    assert run("vc", fcz, "-o", c, "--bank", bank, "-m", model, "-q") == 0
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(c)[0])
    # A bank made by another model is refused.
    capsys.readouterr()
    other = golden_dir / "causal_vocos_25hz_postnorm"
    assert run("vc", src, "-o", tmp_path / "d.wav", "--bank", bank, "-m", other) == 1
    assert "speaker bank made by" in capsys.readouterr().err
