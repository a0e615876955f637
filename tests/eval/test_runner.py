"""The evaluation runner, with a fast stand-in codec: outputs, numbers, resume, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from focalcodec.eval.base import EvalError, Metric, MetricUnavailable
from focalcodec.eval.conversion import plan_conversions
from focalcodec.eval.data import find_utterances
from focalcodec.eval.runner import EvalOptions, ModelSpec, evaluate
from support import FakeCodec


class Unavailable(Metric):
    name = "needs-model"
    columns = ("x",)

    def setup(self, cache):
        raise MetricUnavailable("needs a model that is not installed")


@pytest.fixture
def data(tmp_path):
    """Two speakers with a 0.5 s and a 0.75 s noise file each."""
    rng = np.random.default_rng(0)
    for spk in ("s1", "s2"):
        for i, seconds in enumerate((0.5, 0.75)):
            path = tmp_path / "in" / spk / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    return tmp_path / "in"


def _run(out, utts, codecs, **kw):
    kw.setdefault("metrics", ["sisdr", "mel", Unavailable()])
    opts = EvalOptions(out_dir=out, num_figures=0, progress=False, **kw)
    logs: list[str] = []
    report = evaluate(
        [ModelSpec(k, v) for k, v in codecs.items()], utts, opts, logs.append
    )
    return report, logs


def test_outputs_and_numbers(tmp_path, data):
    utts = find_utterances(data)
    report, logs = _run(tmp_path / "out", utts, {"a": FakeCodec(), "b": FakeCodec()})
    out = tmp_path / "out"
    for name in ("results.json", "per_file.csv", "summary.csv", "summary.md"):
        assert (out / name).is_file()
    assert (
        report["per_file"] == json.loads((out / "results.json").read_text())["per_file"]
    )
    assert report["unavailable"] == {
        "needs-model": "needs a model that is not installed"
    }
    assert any("needs-model" in line for line in logs)
    rows = report["per_file"]
    assert len(rows) == 8 and {r["model"] for r in rows} == {"a", "b"}
    first = next(r for r in rows if r["key"] == "s1/0.wav")
    # 0.5 s -> 25 frames of 320 samples -> 25 tokens of 4 bits -> 200 bit/s.
    assert first["num_tokens"] == 25 and first["bitrate_bps"] == pytest.approx(200.0)
    assert first["enc_rtf"] > 0 and first["dec_rtf"] > 0
    assert all(np.isfinite(r["sisdr"]) and r["mel_dist"] > 0 for r in rows)
    summary = {s["model"]: s for s in report["summary"]}
    assert summary["a"]["files"] == 4 and summary["a"]["nominal_bps"] == 200.0
    assert summary["a"]["minutes"] == pytest.approx(2.5 / 60)
    assert summary["a"]["sisdr"] == pytest.approx(
        np.mean([r["sisdr"] for r in rows if r["model"] == "a"])
    )
    with open(out / "per_file.csv") as fileobj:
        assert len(list(csv.DictReader(fileobj))) == 8
    table = (out / "summary.md").read_text()
    assert "| a |" in table and "| b |" in table and "sisdr ↑" in table


def test_existing_results_need_force_or_resume(tmp_path, data):
    utts = find_utterances(data)
    _run(tmp_path / "out", utts, {"a": FakeCodec()})
    with pytest.raises(EvalError, match="--force"):
        _run(tmp_path / "out", utts, {"a": FakeCodec()})
    codec = FakeCodec()
    _run(tmp_path / "out", utts, {"a": codec}, force=True)
    assert codec.encoded == 1 + 4  # warm-up + every file again


def test_resume_skips_finished_files_and_keeps_their_numbers(tmp_path, data):
    utts = find_utterances(data)
    first, _ = _run(tmp_path / "out", utts[:2], {"a": FakeCodec()})
    log = tmp_path / "out" / "per_file.jsonl"
    with open(log, "a") as fileobj:
        fileobj.write('{"model": "a", "task": "reconstr')  # a crash mid-line
    codec = FakeCodec()
    report, _ = _run(tmp_path / "out", utts, {"a": codec}, resume=True)
    assert codec.encoded == 1 + 2  # warm-up + the two unfinished files
    assert len(report["per_file"]) == 4
    assert report["per_file"][:2] == first["per_file"]
    assert report["summary"][0]["files"] == 4
    assert all(json.loads(line) for line in log.read_text().splitlines())


def test_unreadable_file_is_reported_and_the_run_goes_on(tmp_path, data):
    (data / "s1" / "broken.wav").write_bytes(b"RIFF not really")
    report, logs = _run(tmp_path / "out", find_utterances(data), {"a": FakeCodec()})
    assert [f["key"] for f in report["failed"]] == ["s1/broken.wav"]
    assert report["summary"][0]["files"] == 4
    assert any("broken.wav" in line for line in logs)
    assert "broken.wav" in (tmp_path / "out" / "summary.md").read_text()


def test_voice_conversion_uses_matching_sets_and_non_intrusive_metrics(tmp_path, data):
    utts = find_utterances(data)
    plan = plan_conversions(utts, num_refs=1)
    codec = FakeCodec()
    report, _ = _run(
        tmp_path / "out", utts, {"a": codec}, conversions=plan, reconstruct=False
    )
    rows = report["per_file"]
    assert [r["task"] for r in rows] == ["conversion"] * 2
    assert {r["target"] for r in rows} == {"s1", "s2"}
    assert all("sisdr" not in r for r in rows)  # intrusive metrics are skipped
    sets = [m for m in codec.matching_sets if m is not None]
    assert len(sets) == 2 and all(m.ndim == 2 for m in sets)


def test_duplicate_labels_are_rejected(tmp_path, data):
    with pytest.raises(EvalError, match="unique"):
        evaluate(
            [ModelSpec("a", FakeCodec()), ModelSpec("a", FakeCodec())],
            find_utterances(data),
            EvalOptions(out_dir=tmp_path / "o", progress=False, metrics=[]),
        )
