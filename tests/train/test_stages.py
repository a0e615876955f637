"""The three recipes on tiny golden architectures: train, resume exactly, export, load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.cli import train as cli
from focalcodec.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from focalcodec.train.logger import read_metrics
from focalcodec.train.runner import build_stage, run
from support import (
    FAST,
    REPO,
    assert_same_state,
    one_line_error,
    speech_clips,
    tiny_config,
)

pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def clips(data_dir, tmp_path_factory):
    return speech_clips(data_dir, tmp_path_factory.mktemp("clips"))


def golden(data_dir: Path, name: str) -> Path:
    return data_dir / "golden" / name


def slot_state(codec: FocalCodec, slot: str) -> dict:
    return getattr(codec, slot).state_dict()


def check_resume(stage, tmp_path, clips, model, *extra):
    """Run 4 steps straight and 2 + 2 with a resume; both must end identical."""
    whole = tiny_config(stage, tmp_path / "whole", clips, model, *extra)
    run(whole)
    part = tiny_config(
        stage, tmp_path / "part", clips, model, "trainer.max_steps=2", *extra
    )
    run(part)
    run(tiny_config(stage, tmp_path / "part", clips, model, *extra), resume=True)
    a = load_checkpoint(latest_checkpoint(tmp_path / "whole"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "part"))
    assert a["meta"]["step"] == b["meta"]["step"] == 4
    assert_same_state(a["weights"], b["weights"])
    assert_same_state(a["state"], b["state"])
    return whole


def test_quantizer_stage(data_dir, clips, tmp_path):
    model = golden(data_dir, "noncausal_vocos_50hz")
    cfg = check_resume("quantizer", tmp_path, clips, model)
    init = build_stage(cfg, torch.device("cpu")).codec
    trained = FocalCodec.from_pretrained(tmp_path / "whole" / "export")
    # Only the compressor/decompressor moved; the frozen slots are exported unchanged.
    assert_same_state(slot_state(trained, "encoder"), slot_state(init, "encoder"))
    assert_same_state(slot_state(trained, "decoder"), slot_state(init, "decoder"))
    before, after = slot_state(init, "compressor"), slot_state(trained, "compressor")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # ... and learnt: the training loss fell (0.630 -> 0.538 when measured).
    rows = read_metrics(tmp_path / "whole" / "metrics.csv")
    train = [r for r in rows if r["split"] == "train"]
    losses = [float(r["value"]) for r in train if r["name"] == "loss"]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "whole"))
    for key, value in slot_state(trained, "decompressor").items():
        assert torch.equal(value, ckpt["weights"][f"model.decompressor.{key}"])
    toks = trained.sig_to_toks(torch.randn(1, 4000))
    assert toks.dtype == torch.int64 and int(toks.max()) < 1024


@pytest.mark.parametrize("case", ["noncausal_vocos_50hz", "causal_wavenext_50hz"])
def test_decoder_stage(data_dir, clips, tmp_path, case):
    model = golden(data_dir, case)
    # The resume point (step 2) is also where the mel-only warm-up ends.
    extra = ["trainer.valid_every=4", "discriminator.warmup_steps=2"]
    check_resume("decoder", tmp_path, clips, model, *extra)
    rows = read_metrics(tmp_path / "whole" / "metrics.csv")
    disc_steps = [int(r["step"]) for r in rows if r["name"] == "disc_loss"]
    assert disc_steps == [3, 4]
    trained = FocalCodec.from_pretrained(tmp_path / "whole" / "export")
    init = FocalCodec.from_config(model)
    assert trained.sample_rate_output == init.sample_rate_output
    samples = tmp_path / "whole" / "samples" / "step_00000004"
    ref = samples / "valid0_reference.wav"
    assert ref.is_file() and (samples / "valid0_output.wav").is_file()
    assert sf.info(str(ref)).samplerate == trained.sample_rate_output
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "whole"))
    assert any(k.startswith("discriminator.") for k in ckpt["weights"])
    assert "discriminator" in ckpt["state"]["optimizers"]


def test_causal_encoder_stage(data_dir, clips, tmp_path):
    teacher = golden(data_dir, "noncausal_vocos_50hz")
    extra = [
        f"distill.teacher.config={teacher}",
        "model.overrides={encoder_config.causal: true}",
        "optim.lr=1e-3",  # the recipe's 1e-4 moves too little in 4 steps to measure
    ]
    cfg = check_resume("causal-encoder", tmp_path, clips, teacher, *extra)
    student = FocalCodec.from_pretrained(tmp_path / "whole" / "export").eval()
    assert student.config["encoder_config"]["causal"] is True
    start = build_stage(cfg, torch.device("cpu"))
    # The student started from the teacher's weights, then moved.
    assert_same_state(slot_state(start.codec, "encoder"), start.teacher.state_dict())
    before, after = start.teacher.state_dict(), slot_state(student, "encoder")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # ... towards the teacher: the distillation distance on the clips fell (measured
    # 1.366 -> 1.242).
    sig = torch.stack(
        [
            torch.from_numpy(sf.read(p, dtype="float32")[0])
            for p in sorted(clips.glob("*.wav"))
        ]
    )
    with torch.no_grad():
        target = FocalCodec.from_pretrained(teacher).eval().sig_to_feats(sig)
        n = target.shape[1]  # the causal front-end gives one frame more
        first = (start.codec.eval().sig_to_feats(sig)[:, :n] - target).square().mean()
        last = (student.sig_to_feats(sig)[:, :n] - target).square().mean()
    assert last < 0.95 * first, (float(first), float(last))


def test_downsampling_quantizer_with_feature_cache(data_dir, clips, tmp_path):
    model = golden(data_dir, "noncausal_vocos_12_5hz_legacy")
    cfg = tiny_config(
        "quantizer",
        tmp_path,
        clips,
        model,
        "data.cache_features=true",
        "trainer.max_steps=2",
        "trainer.valid_every=2",
    )
    metrics = run(cfg)
    assert {"feature_mse", "feature_cosine", "bit_entropy"} <= set(metrics)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 6
    assert (tmp_path / "samples" / "step_00000002" / "valid0_output.wav").is_file()
    FocalCodec.from_pretrained(tmp_path / "export")


def test_fine_tuning_starts_from_pretrained_weights(data_dir, clips, tmp_path):
    source = golden(data_dir, "causal_vocos_25hz_postnorm")
    cfg = tiny_config(
        "quantizer", tmp_path, clips, source, f"model.pretrained={source}"
    )
    stage = build_stage(cfg, torch.device("cpu"))
    official = FocalCodec.from_pretrained(source)
    assert_same_state(stage.codec.state_dict(), official.state_dict())


def test_cli_train_export_and_errors(data_dir, clips, tmp_path, capsys):
    model = golden(data_dir, "noncausal_vocos_50hz")
    run_dir = tmp_path / "run"
    recipe = str(REPO / "configs" / "tiny" / "quantizer.yaml")
    options = ["quantizer", "--config", recipe, "--run-dir", str(run_dir)]
    overrides = [f"data.source={clips}", f"model.config={model}", *FAST]
    args = [*options, *overrides, "trainer.max_steps=2"]
    assert cli.main(args) == 0
    # A second run into the same folder must choose between resuming and starting over.
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err
    assert cli.main([*options, "--resume", *overrides, "trainer.max_steps=3"]) == 0
    assert latest_checkpoint(run_dir).name == "step_00000003"
    assert cli.main([*options, "--force", *overrides, "trainer.max_steps=2"]) == 0
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_00000002"]
    # Export from the run folder, refusing to overwrite without --force.
    out = tmp_path / "exported"
    assert cli.main(["export", str(run_dir), str(out)]) == 0
    codec = FocalCodec.from_pretrained(out)
    assert codec.codebook_size == 1024
    assert cli.main(["export", str(run_dir), str(out)]) == 2
    assert cli.main(["export", str(run_dir), str(out), "--force"]) == 0
    # A typo in an override is one clear line.
    capsys.readouterr()
    assert cli.main([*options, "--force", *overrides, "optim.lrr=1"]) == 2
    assert "optim.lrr" in one_line_error(capsys)


def test_torchrun_two_cpu_processes(data_dir, clips, tmp_path):
    model = golden(data_dir, "noncausal_vocos_50hz")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "focalcodec.train",
        "quantizer",
        "--config",
        str(REPO / "configs" / "tiny" / "quantizer.yaml"),
        "--run-dir",
        str(tmp_path),
        f"data.source={clips}",
        f"model.config={model}",
        *FAST,
        "data.batch_size=1",
        "data.cache_features=true",
        "trainer.device=cpu",
        "trainer.threads=1",
        "trainer.max_steps=2",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:3000] + " ... " + done.stderr[-2000:]
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    FocalCodec.from_pretrained(tmp_path / "export")
