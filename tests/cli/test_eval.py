"""``focalcodec eval`` end to end with a golden tiny model on real speech."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.files.audio import load_audio
from support import one_line_error

MODEL = "noncausal_vocos_50hz"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("eval") / "results"
    argv = [
        "eval", str(data_dir / "audio" / "manifest.jsonl"),
        "--speakers", "84", "--limit", "2",
        "-m", f"tiny={data_dir / 'golden' / MODEL}",
        "-o", str(out), "--metrics", "sisdr,stoi,pesq,mel,mrstft",
        "--figures", "1", "--device", "cpu", "-q",
    ]  # fmt: skip
    assert main(argv) == 0
    return out


def test_writes_every_output(run_dir):
    for name in ("results.json", "per_file.csv", "summary.csv", "summary.md"):
        assert (run_dir / name).stat().st_size > 0
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert len(pngs) == 2  # one spectrogram + the code-usage plot
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not list(run_dir.glob(".*.part"))


def test_numbers_agree_with_the_codec_and_each_other(run_dir, data_dir):
    report = json.loads((run_dir / "results.json").read_text())
    rows = report["per_file"]
    assert [r["key"] for r in rows] == [
        "librispeech/dev-clean/84/84-121123-0000.flac",
        "librispeech/dev-clean/84/84-121123-0001.flac",
    ]
    codec = FocalCodec.from_pretrained(str(data_dir / "golden" / MODEL)).eval()
    bits = codec.bits_per_token
    for row in rows:
        sig = load_audio(data_dir / "audio" / row["key"], 16000).sig
        with torch.inference_mode():
            toks = codec.sig_to_toks(torch.from_numpy(sig)[None])
        assert row["num_tokens"] == toks.shape[-1]
        assert row["duration_s"] == pytest.approx(sig.size / 16000)
        assert row["bitrate_bps"] == pytest.approx(
            toks.numel() * bits * 16000 / sig.size
        )
        assert row["mel_dist"] > 0 and row["mrstft_dist"] > 0
    (summary,) = report["summary"]
    tokens = sum(r["num_tokens"] for r in rows)
    duration = sum(r["duration_s"] for r in rows)
    assert summary["bitrate_bps"] == pytest.approx(tokens * bits / duration)
    assert summary["nominal_bps"] == pytest.approx(codec.token_rate * bits)
    assert 0 < summary["code_usage"] <= 1 and 0 < summary["norm_entropy"] <= 1
    # The test extra installs pystoi, pesq and matplotlib: every metric and the
    # figures are available here.
    assert report["unavailable"] == {}
    for metric in ("stoi", "pesq"):
        assert 0 < summary[metric] < 5 and all(metric in r for r in rows)
    with open(run_dir / "per_file.csv") as fileobj:
        assert [r["key"] for r in csv.DictReader(fileobj)] == [r["key"] for r in rows]
    assert "| tiny |" in (run_dir / "summary.md").read_text()


def test_refuses_to_overwrite_and_reports_one_line(run_dir, capsys, data_dir):
    argv = ["eval", str(data_dir / "audio"), "-m", "x", "-o", str(run_dir), "-q"]
    assert main(argv) == 1
    assert "--force" in one_line_error(capsys)


def test_bad_inputs_fail_with_one_line(tmp_path, capsys, data_dir):
    golden = str(data_dir / "golden" / MODEL)
    cases = [
        ["eval", str(tmp_path / "nothing"), "-m", golden],
        ["eval", str(data_dir / "audio"), "-m", golden, "--metrics", "bogus"],
        ["eval", str(data_dir / "audio")],
    ]
    for argv in cases:
        assert main([*argv, "-o", str(tmp_path / "o"), "-q"]) != 0
        one_line_error(capsys)


def test_list_metrics(capsys):
    assert main(["eval", "--list-metrics"]) == 0
    assert {"sisdr", "pesq", "asr", "dnsmos", "speaker"} <= set(
        capsys.readouterr().out.split()
    )


def test_voice_conversion_with_a_golden_model(tmp_path, data_dir):
    audio = data_dir / "audio"
    plan = tmp_path / "plan.jsonl"
    plan.write_text(
        json.dumps(
            {
                "source": str(audio / "librispeech/dev-clean/84/84-121123-0000.flac"),
                "target": "June",
                "refs": [str(audio / "multilingual/fr/conf-enteringno.flac")],
            }
        )
        + "\n"
    )
    out = tmp_path / "vc"
    argv = [
        "eval", str(audio / "manifest.jsonl"), "--limit", "1", "--vc-plan", str(plan),
        "--vc-only", "-m", str(data_dir / "golden" / MODEL), "-o", str(out),
        "--metrics", "sisdr", "--figures", "1", "--device", "cpu", "-q",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "results.json").read_text())
    (row,) = report["per_file"]
    assert row["task"] == "conversion" and row["target"] == "June"
    assert "sisdr" not in row  # intrusive metrics do not apply to conversion
    assert row["num_tokens"] > 0
    assert report["unavailable"] == {}
    assert len(list((out / "figures").glob("spec_*conversion*.png"))) == 1
    assert "Voice conversion" in (out / "summary.md").read_text()
