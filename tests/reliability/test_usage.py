"""Usage errors exit with status 2 and one line, before any work, in every verb."""

from __future__ import annotations

from pathlib import Path

import pytest

from focalcodec.cli import main

CASES = [
    ("encode", "x.wav", "-o", "y.fcz", "--batch-size", "0"),
    ("encode", "x.wav", "y.wav", "-o", "-"),
    ("encode", "x.wav", "-o", "y.fcz", "--device", "nonsense"),
    ("decode", "x.fcz", "-o", "y.wav", "--sample-rate", "5"),
    ("decode", "x.fcz", "-o", "y.wav", "--sample-rate", "fast"),
    ("decode", "x.fcz", "-o", "y.wav", "--backend", "onnx"),
    ("resynth", "x.wav", "-o", "y.wav", "--sample-rate", "0"),
    ("resynth", "DIR", "-o", "DIR"),
    ("resynth", "DIR", "-o", "./DIR/sub/.."),
    ("vc", "x.wav", "-o", "y.wav", "-r", "x.wav", "--topk", "0"),
    ("vc", "x.wav", "-o", "y.wav", "--bank", "b.safetensors", "--save-bank", "c"),
    ("vc", "-r", "x.wav"),
    ("info",),
    ("eval",),
    ("eval", "DIR"),
    ("eval", "DIR", "-m", "M", "--metrics", "bogus"),
    ("eval", "DIR", "-m", "M", "--device", "nonsense"),
    ("eval", "DIR", "-m", "M", "--batch-size", "0"),
    ("eval", "DIR", "-m", "M", "--vc-refs", "0"),
    ("eval", "DIR", "-m", "M", "--force", "--resume"),
    ("stream", "x.wav", "--topk", "0"),
    ("stream", "x.wav", "-o", "x.wav"),
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a))
def test_usage_errors_exit_2_with_one_line(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR" / "sub").mkdir(parents=True)
    (tmp_path / "DIR" / "a.wav").write_bytes(b"")
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "x.fcz").write_bytes(b"")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


def test_failures_that_are_not_usage_errors_exit_1(tmp_path: Path, capsys):
    """A missing input is a failed file (status 1), not a usage error; it is reported
    before any model is loaded (no such model here, nor a network)."""
    args = ["encode", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "y.fcz")]
    assert main([*args, "-m", str(tmp_path / "no_such_model")]) == 1
    assert "no such file" in capsys.readouterr().err
