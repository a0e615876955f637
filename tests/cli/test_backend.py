"""``--backend onnx`` and ``models --details`` on the command line.

References: the PyTorch backend of the same commands (tokens and .fcz bytes must be
identical, audio within AUDIO_TOL) and, for model cards, the parameter counts that the
original package reports (../shared/manifests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.fcz import bitstream
from focalcodec.files.audio import load_audio
from focalcodec.pipeline import models as loader

pytest.importorskip("onnxruntime")
from support import (  # noqa: E402  (skips without the onnx extra)
    exported,
    one_line_error,
    run_cli,
)

CLIP = "librispeech/dev-clean/84/84-121123-0000.flac"  # 2.09 s
CASES = ["noncausal_vocos_50hz", "causal_wavenext_50hz"]  # 16 and 24 kHz output
# Decoded files are 16-bit PCM: one step is 3.1e-5, and the graphs agree with PyTorch
# to 1e-5 before rounding (docs/deployment.md), so files may differ by one step.
AUDIO_TOL = 1e-4


@pytest.fixture(scope="module", params=CASES)
def models(request, tmp_path_factory, golden_dir: Path) -> tuple[Path, Path]:
    """(golden model folder, its ONNX export folder)."""
    _, out, _ = exported(tmp_path_factory, golden_dir, request.param)
    return golden_dir / request.param, out


@pytest.fixture(scope="module")
def clip(data_dir: Path) -> Path:
    return data_dir / "audio" / CLIP


def _read(path: Path) -> tuple[np.ndarray, int]:
    sig, rate = sf.read(path, dtype="float32")
    assert sig.ndim == 1 and np.abs(sig).max() > 1e-3, path  # real audio, not silence
    return sig, rate


def test_fcz_files_are_the_same_with_either_backend(tmp_path, models, clip) -> None:
    golden, export = models
    made_by_torch, made_by_onnx = tmp_path / "t.fcz", tmp_path / "o.fcz"
    assert run_cli("encode", clip, "-o", made_by_torch, "-m", golden, "-q") == 0
    args = ("encode", clip, "-o", made_by_onnx, "-m", export, "--backend", "onnx")
    assert run_cli(*args, "-q") == 0
    ours = bitstream.loads(made_by_onnx.read_bytes())
    ref = bitstream.loads(made_by_torch.read_bytes())
    np.testing.assert_array_equal(ours.toks, ref.toks)
    assert ours.header == ref.header and ours.num_samples == ref.num_samples
    assert made_by_onnx.read_bytes() == made_by_torch.read_bytes()

    # Each file decodes with the other backend; both match torch decoding torch's file.
    ref_wav, a, b = tmp_path / "ref.wav", tmp_path / "a.wav", tmp_path / "b.wav"
    assert run_cli("decode", made_by_torch, "-o", ref_wav, "-m", golden, "-q") == 0
    assert run_cli("decode", made_by_onnx, "-o", a, "-m", golden, "-q") == 0
    args = ("decode", made_by_torch, "-o", b, "-m", export, "--backend", "onnx")
    assert run_cli(*args, "-q") == 0
    ref_sig, rate = _read(ref_wav)
    sig16, _ = load_audio(clip, 16000)
    assert len(ref_sig) == int(len(sig16) * rate / 16000)
    for path in (a, b):
        sig, out_rate = _read(path)
        assert out_rate == rate and sig.shape == ref_sig.shape
        assert np.abs(sig - ref_sig).max() < AUDIO_TOL, path


def test_resynth_and_tokenize(tmp_path, models, clip) -> None:
    golden, export = models
    ref, ours = tmp_path / "ref.flac", tmp_path / "ours.flac"
    assert run_cli("resynth", clip, "-o", ref, "-m", golden, "-q") == 0
    args = ("resynth", clip, "-o", ours, "-m", export, "--backend", "onnx", "-q")
    assert run_cli(*args) == 0
    ref_sig, rate = _read(ref)
    sig, out_rate = _read(ours)
    assert out_rate == rate and sig.shape == ref_sig.shape
    assert np.abs(sig - ref_sig).max() < AUDIO_TOL

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "one.flac").write_bytes(clip.read_bytes())
    args = ("tokenize", folder, "-m", export, "--backend", "onnx", "-q")
    assert run_cli(*args, "-o", tmp_path / "toks_onnx") == 0
    assert run_cli("tokenize", folder, "-m", golden, "-q", "-o", tmp_path / "toks") == 0
    for name in ("meta.json", "index.jsonl", "tokens.npy", "offsets.npy"):
        assert (tmp_path / "toks_onnx" / name).read_bytes() == (
            tmp_path / "toks" / name
        ).read_bytes(), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encode", "IN", "-o", "x.fcz", "--backend", "onnx"), "focalcodec_50hz is not"),
        (("encode", "IN", "-o", "x.fcz", "--backend", "onnx", "-m", "GOLDEN"), "has no manifest.json"),
        (("encode", "IN", "-o", "x.fcz", "--backend", "onnx", "-m", "IN"), "is not a folder"),
        (("resynth", "IN", "-o", "x.wav", "--backend", "onnx", "-m", "EXPORT", "--device", "cuda"), "runs on the CPU"),
        (("decode", "x.fcz", "-o", "x.wav", "--backend", "onnx"), "needs --model DIR"),
        (("vc", "IN", "-o", "x.wav", "-r", "IN", "--backend", "onnx", "-m", "EXPORT"), "no kNN matching"),
        (("encode", "IN", "-o", "x.fcz", "--backend", "tflite"), "invalid choice"),
    ],
)  # fmt: skip
def test_backend_usage_errors(
    tmp_path, monkeypatch, models, clip, capsys, args, message
):
    golden, export = models
    names = {"IN": clip, "GOLDEN": golden, "EXPORT": export}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.fcz").write_bytes(b"")
    capsys.readouterr()
    assert run_cli(*[names.get(a, a) for a in args]) == 2
    if message == "invalid choice":  # argparse prints its usage, then the error
        assert message in capsys.readouterr().err
        return
    assert message in one_line_error(capsys, prefix=True, quiet_stdout=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.fcz"]


def test_missing_onnxruntime_is_a_usage_error(
    tmp_path, monkeypatch, models, clip, capsys
) -> None:
    _, export = models
    real = loader.importlib.util.find_spec
    monkeypatch.setattr(
        loader.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    args = ("encode", clip, "-o", tmp_path / "x.fcz", "-m", export, "--backend", "onnx")
    assert run_cli(*args) == 2
    assert "pip install 'focalcodec[onnx]'" in one_line_error(
        capsys, prefix=True, quiet_stdout=True
    )


def test_broken_export_is_one_line(tmp_path, models, clip, capsys) -> None:
    _, export = models
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["format_version"] = 99
    (broken / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    args = ("encode", clip, "-o", tmp_path / "x.fcz", "-m", broken, "--backend", "onnx")
    assert run_cli(*args, "-q") == 1
    assert "version 99 is not supported" in one_line_error(
        capsys, prefix=True, quiet_stdout=True
    )
    assert not (tmp_path / "x.fcz").exists()


def test_models_details_prints_the_card(data_dir: Path, capsys) -> None:
    manifest = json.loads((data_dir / "manifests" / "focalcodec_50hz.json").read_text())
    assert run_cli("models", "--details", "focalcodec_50hz") == 0
    lines = capsys.readouterr().out.splitlines()
    for slot, count in manifest["params_per_component"].items():
        row = next(line for line in lines if line.strip().startswith(f"{slot} ("))
        assert row.split()[-1] == f"{count:,}", row
    total = next(line for line in lines if line.startswith("parameters"))
    assert f"{manifest['num_total_params']:,}" in total
    assert any(line.startswith("bitrate") and "650 bit/s" in line for line in lines)

    assert run_cli("models", "--details", "focalcodec_50hz", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"]["total"] == manifest["num_total_params"]

    assert run_cli("models") == 0  # without --details: the table of packaged models
    table = capsys.readouterr().out
    assert table.startswith("name") and "focalcodec_50hz_2k_causal" in table

    assert run_cli("models", "--details", "no_such_model") == 1
    assert "no_such_model" in one_line_error(capsys, prefix=True, quiet_stdout=True)


def test_models_details_of_an_export(models, capsys) -> None:
    golden, export = models
    assert run_cli("models", "--details", golden, "--json") == 0
    ref = json.loads(capsys.readouterr().out)
    assert run_cli("models", "--details", export, "--json") == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["params"] == ref["params"] and ours["params"]["total"] > 0
    assert ours["config_hash"] == ref["config_hash"]
    assert "ONNX export" in ours["source"]
