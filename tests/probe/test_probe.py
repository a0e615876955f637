"""Probes that can fail: tokens that encode the label reach near-perfect accuracy,
shuffled labels stay at chance, CTC learns tone sequences; plus resume and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from focalcodec.errors import OutputExistsError
from focalcodec.probe import ProbeJob, load_probe_config, run_probe
from support import write_tones

GOLDEN = "noncausal_vocos_50hz"
# A small probe and a high learning rate: CPU seconds, not the paper's recipe.
FAST = [
    "net.hidden=32",
    "net.layers=1",
    "optim.lr=0.01",
    "data.valid_fraction=0.2",
    "data.test_fraction=0.2",
    "trainer.device=cpu",
    "log.progress=false",
]


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return write_tones(tmp_path_factory.getbasetemp() / "probe_tones")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "probe_cache"


def probe(manifest, out, cache, models, *extra, task="classify", label="pitch"):
    overrides = [f"task={task}", f"data.manifest={manifest}"]
    overrides += [f"data.cache_dir={cache}", *FAST, *extra]
    if task == "classify":
        overrides.append(f"data.label={label}")
    cfg = load_probe_config(None, overrides)
    return ProbeJob(cfg, list(models), out, progress=False)


def test_tokens_that_encode_the_label_give_near_perfect_accuracy(
    tmp_path, tones, cache, golden_dir
):
    model = str(golden_dir / GOLDEN)
    summary = run_probe(probe(tones, tmp_path, cache, [model], "trainer.max_epochs=20"))
    (result,) = summary["models"]
    assert summary["task"] == "classify" and summary["metric"] == "error_rate"
    assert result["test_accuracy"] >= 0.9
    assert result["test_error_rate"] == pytest.approx(1 - result["test_accuracy"])
    assert result["chance_accuracy"] == 0.25
    # 24 clips per pitch: 5 test, then 4 valid, 15 train each; seq_* have no pitch.
    assert summary["data"]["sizes"] == {"train": 60, "valid": 16, "test": 20}
    assert summary["data"]["dropped_entries"] == 72
    assert summary["data"]["classes"] == ["130", "1310", "410", "4170"]
    assert len(result["curves"]) == result["epochs"]
    # The tested epoch has the lowest validation error rate; ties go to the lower
    # validation loss.
    ranks = [(c["valid_error_rate"], c["valid_loss"]) for c in result["curves"]]
    assert result["best_metric"] == "error_then_loss"
    assert result["best_value"] == pytest.approx(min(ranks)[0], abs=1e-6)
    assert result["best_epoch"] == 1 + ranks.index(min(ranks))
    assert {"train_loss", "valid_loss", "valid_error_rate", "lr"} <= set(
        result["curves"][0]
    )
    assert result["curves"][-1]["valid_loss"] < result["curves"][0]["valid_loss"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["models"][0]["test_accuracy"] == result["test_accuracy"]
    folder = (
        tmp_path / json.loads((tmp_path / "probe.json").read_text())["models"][model]
    )
    for png in (tmp_path / "learning_curves.png", folder / "confusion.png"):
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    assert (folder / "run" / "best" / "model.safetensors").stat().st_size > 1000
    table = (tmp_path / "results.md").read_text()
    assert f"| `{model}` | tokens | {100 * result['test_accuracy']:.1f} %" in table


def test_shuffled_labels_stay_at_chance(tmp_path, tones, cache, golden_dir):
    model = str(golden_dir / GOLDEN)
    job = probe(tones, tmp_path, cache, [model], "trainer.max_epochs=20")
    job.cfg.data.label = "shuffled"
    (result,) = run_probe(job)["models"]
    # 4 classes: chance is about 25 %; memorising the training labels cannot help.
    assert result["test_accuracy"] <= 0.5


def test_rerun_resumes_and_matches_an_uninterrupted_run(
    tmp_path, tones, cache, golden_dir
):
    model = str(golden_dir / GOLDEN)
    whole = run_probe(
        probe(tones, tmp_path / "a", cache, [model], "trainer.max_epochs=4")
    )
    run_probe(probe(tones, tmp_path / "b", cache, [model], "trainer.max_epochs=2"))
    part = run_probe(
        probe(tones, tmp_path / "b", cache, [model], "trainer.max_epochs=4")
    )
    a, b = whole["models"][0], part["models"][0]
    assert b["epochs"] == 4 and len(b["curves"]) == 4
    for x, y in zip(a["curves"], b["curves"], strict=True):
        assert x == pytest.approx(y)
    assert a["test_accuracy"] == b["test_accuracy"]
    # A finished model is not trained again.
    result = next((tmp_path / "b").glob("*/result.json"))
    stamp = result.stat().st_mtime_ns
    again = run_probe(
        probe(tones, tmp_path / "b", cache, [model], "trainer.max_epochs=4")
    )
    assert again["models"][0] == b and result.stat().st_mtime_ns == stamp


def test_other_settings_need_force(tmp_path, tones, cache, golden_dir):
    model = str(golden_dir / GOLDEN)
    run_probe(probe(tones, tmp_path, cache, [model], "trainer.max_epochs=1"))
    other = probe(
        tones, tmp_path, cache, [model], "trainer.max_epochs=1", "net.hidden=16"
    )
    with pytest.raises(OutputExistsError, match="net.hidden: 32 before, 16 now"):
        run_probe(other)
    other.force = True
    (result,) = run_probe(other)["models"]
    assert (
        result["epochs"] == 1
        and json.loads((tmp_path / "probe.json").read_text())["settings"]["net"][
            "hidden"
        ]
        == 16
    )
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a probe output folder"):
        run_probe(probe(tones, stranger, cache, [model], "trainer.max_epochs=1"))


def test_asr_probe_end_to_end(tmp_path, tones, cache, golden_dir):
    # Tone sequences spelled a-d: the pipeline runs and learns (reading them well
    # takes longer than a unit test; test_stage checks that CTC can).
    model = str(golden_dir / GOLDEN)
    extra = ["trainer.max_epochs=6", "data.batch_size=4"]
    summary = run_probe(probe(tones, tmp_path, cache, [model], *extra, task="asr"))
    (result,) = summary["models"]
    assert summary["metric"] == "wer" and summary["data"]["units"] == "char"
    assert summary["data"]["num_units"] == 5  # <unk>, a, b, c, d
    assert summary["data"]["dropped_entries"] == 96  # the single tones: no text
    assert 0.0 <= result["test_cer"] <= 1.0 and 0.0 <= result["test_wer"] <= 1.0
    assert result["examples"][0]["ref"] in {e["ref"] for e in result["examples"]}
    curves = result["curves"]
    # Below the all-blank plateau (about 0.8 of the first loss): letters are emitted.
    assert curves[-1]["valid_loss"] < 0.6 * curves[0]["valid_loss"]


def test_bpe_units_and_feature_input(tmp_path, tones, cache, golden_dir):
    model = str(golden_dir / GOLDEN)
    job = probe(
        tones,
        tmp_path,
        cache,
        [model],
        "trainer.max_epochs=1",
        "data.units=bpe:8",
        "input=features",
        task="asr",
    )
    summary = run_probe(job)
    (result,) = summary["models"]
    assert summary["data"]["units"] == "bpe:8" and summary["data"]["num_units"] == 8
    assert result["input"] == "features" and result["frame_rate"] == 50.0
    assert list((cache / "features").glob("*-qfeats/*.safetensors"))
    assert (tmp_path / "units.bin").read_bytes().startswith(b"bpe\n")


def test_random_weights_and_several_models_in_one_table(
    tmp_path, tones, cache, golden_dir
):
    model = str(golden_dir / GOLDEN)
    models = [model, f"random:{model}"]
    # bf16 autocast on the CPU too (the recipes' GPU setting).
    extra = ["trainer.max_epochs=1", "trainer.precision=bf16"]
    summary = run_probe(probe(tones, tmp_path, cache, models, *extra))
    keys = [r["model_key"] for r in summary["models"]]
    assert [r["model"] for r in summary["models"]] == models and keys[0] != keys[1]
    table = (tmp_path / "results.md").read_text().splitlines()
    assert len([line for line in table if line.startswith("| `")]) == 2
    assert len(list((cache / "tokens").iterdir())) >= 2


def test_two_processes_under_torchrun_rules(tmp_path, tones, golden_dir):
    """2 gloo ranks share the token encoding and the training; rank 0 writes."""
    import torch.multiprocessing as mp

    from support import ddp_probe_worker, free_port

    cache, summaries = tmp_path / "cache", tmp_path / "summaries"
    summaries.mkdir()
    model = str(golden_dir / GOLDEN)
    args = (str(tones), str(tmp_path / "out"), str(cache), model, str(summaries))
    mp.spawn(ddp_probe_worker, args=(2, free_port(), args), nprocs=2, join=True)
    rank0 = json.loads((summaries / "rank0.json").read_text())
    rank1 = json.loads((summaries / "rank1.json").read_text())
    assert rank0 == rank1
    (result,) = rank0["models"]
    assert result["epochs"] == 2 and len(result["curves"]) == 2
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == rank0
    # Both ranks encoded a share; the merged folder holds every file once.
    from focalcodec.tokens.dataset import TokenDataset

    (folder,) = (cache / "tokens").iterdir()
    ids = TokenDataset(folder).ids
    assert len(ids) == len(set(ids)) == 96


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probe_on_gpu_with_bf16(tmp_path, tones, golden_dir):
    model = str(golden_dir / GOLDEN)
    job = probe(tones, tmp_path, tmp_path / "cache", [model], "trainer.max_epochs=2")
    job.cfg.trainer.device = "cuda"
    job.cfg.trainer.precision = "bf16"
    (result,) = run_probe(job)["models"]
    assert result["epochs"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0
