"""``focalcodec probe``: the command line around the probe runner."""

from __future__ import annotations

import json

import pytest

from focalcodec.cli import main
from support import write_tones

GOLDEN = "noncausal_vocos_50hz"
SMALL = [
    "--set",
    "net.hidden=16",
    "--set",
    "net.layers=1",
    "--set",
    "data.valid_fraction=0.2",
    "--set",
    "data.test_fraction=0.2",
    "--device",
    "cpu",
    "-q",
]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tones(tmp_path_factory.getbasetemp() / "probe_tones")


def test_classify_command_writes_results_and_guards_them(
    tmp_path, tones, golden_dir, capsys
):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["probe", "classify", "--data", str(tones), "--label", "pitch"]
    args += ["-m", str(golden_dir / GOLDEN), "-o", str(out), "--cache-dir", str(cache)]
    args += ["--max-epochs", "1", "--where", "id=tone*", *SMALL]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "classify" and results["metric"] == "error_rate"
    assert results["data"]["where"] == {"id": "tone*"}
    assert results["data"]["dropped_entries"] == 0
    assert {"test_accuracy", "test_error_rate", "curves"} <= set(results["models"][0])
    assert (out / "results.md").is_file() and (out / "learning_curves.png").is_file()
    # Same settings: nothing to redo. Other settings: refused, one line, exit 1.
    assert main(args) == 0
    assert main([*args, "--set", "net.hidden=8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "--force" in err[0]
    assert main([*args, "--set", "net.hidden=8", "--force"]) == 0


def test_asr_command_and_usage_errors(tmp_path, tones, golden_dir, capsys):
    base = ["probe", "asr", "--data", str(tones), "-m", str(golden_dir / GOLDEN)]
    base += ["-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert main([*base, "--units", "words", *SMALL]) == 2
    assert "bpe:N" in capsys.readouterr().err
    assert main([*base, "--where", "nofield", *SMALL]) == 2
    assert "FIELD=GLOB" in capsys.readouterr().err
    assert main([*base, "--max-epochs", "1", "--units", "bpe:6", *SMALL]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["metric"] == "wer" and results["data"]["units"] == "bpe:6"
    assert {"test_cer", "test_wer"} <= set(results["models"][0])


def test_probe_is_listed(capsys):
    assert main(["--help"]) == 0
    assert "probe" in capsys.readouterr().out
