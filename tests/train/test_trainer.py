"""The shared training loop, exercised with a toy stage."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from focalcodec import runtime as distributed
from focalcodec.errors import ConfigError
from focalcodec.train.checkpoint import list_checkpoints, load_checkpoint
from focalcodec.train.logger import read_metrics
from focalcodec.train.trainer import Trainer
from support import (
    ToyData,
    ToyStage,
    assert_same_state,
    ddp_toy_worker,
    free_port,
    toy_collate,
    toy_config,
)

LOCAL = distributed.DistInfo(0, 1, 0, torch.device("cpu"))


def make(cfg, resume=False, dropout=0.2):
    stage = ToyStage(cfg, LOCAL.device, dropout=dropout)
    trainer = Trainer(
        stage, cfg, LOCAL, ToyData(), ToyData(8), collate_fn=toy_collate, resume=resume
    )
    return stage, trainer


def test_loss_goes_down_and_outputs_are_written(tmp_path):
    cfg = toy_config(tmp_path, "trainer.max_steps=30", "trainer.valid_every=10")
    stage, trainer = make(cfg, dropout=0.0)
    trainer.fit()
    rows = read_metrics(tmp_path / "metrics.csv")
    losses = [float(r["value"]) for r in rows if r["name"] == "loss"]
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    valid = [r for r in rows if r["split"] == "valid" and r["name"] == "mse"]
    assert [int(r["step"]) for r in valid] == [10, 20, 30]
    assert {r["name"] for r in rows} >= {"items_per_s", "lr_net", "grad_norm_net"}
    # Checkpoints every 4 steps plus the final one; export written atomically.
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names[-1] == "step_00000030" and "step_00000028" in names
    assert (tmp_path / "export" / "net.safetensors").is_file()
    assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_exact_resume_mid_epoch(tmp_path):
    # 24 items / batch 4 = 6 batches per epoch: stop at step 4 (mid-epoch), end at 10
    # (next epoch), with dropout and an epoch-wise learning-rate decay in play.
    whole = toy_config(tmp_path / "whole")
    stage_a, trainer_a = make(whole)
    trainer_a.fit()

    part = toy_config(tmp_path / "part", "trainer.max_steps=4")
    make(part)[1].fit()
    resumed_cfg = toy_config(tmp_path / "part")
    stage_b, trainer_b = make(resumed_cfg, resume=True)
    assert trainer_b.step == 4 and trainer_b.batch_in_epoch == 4
    trainer_b.fit()

    assert trainer_b.step == trainer_a.step == 10 and trainer_b.epoch == 1
    assert_same_state(
        stage_a.nets["net"].state_dict(), stage_b.nets["net"].state_dict()
    )
    assert_same_state(trainer_a.state_dict(), trainer_b.state_dict())
    # The resumed run's CSV continues without duplicate steps.
    steps = [
        int(r["step"])
        for r in read_metrics(tmp_path / "part" / "metrics.csv")
        if r["name"] == "loss"
    ]
    assert steps == list(range(1, 11))


def test_checkpoint_contents_and_pruning(tmp_path):
    cfg = toy_config(
        tmp_path, "trainer.checkpoint_every=2", "trainer.keep_checkpoints=2"
    )
    _, trainer = make(cfg)
    trainer.fit()
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_00000008", "step_00000010"]
    ckpt = load_checkpoint(kept[-1])
    assert ckpt["meta"]["stage"] == "quantizer" and ckpt["meta"]["step"] == 10
    assert ckpt["meta"]["config"]["data"]["batch_size"] == 4
    assert set(ckpt["weights"]) == {
        "net.0.weight",
        "net.0.bias",
        "net.3.weight",
        "net.3.bias",
    }
    assert ckpt["state"]["progress"] == {"step": 10, "epoch": 1, "batch_in_epoch": 4}
    assert "net" in ckpt["state"]["optimizers"] and "net" in ckpt["state"]["schedulers"]


def test_bf16_autocast_on_cpu(tmp_path):
    cfg = toy_config(tmp_path, "trainer.precision=bf16", "trainer.max_steps=20")
    stage, trainer = make(cfg, dropout=0.0)
    trainer.fit()
    assert stage.seen_dtypes == {torch.bfloat16}
    rows = read_metrics(tmp_path / "metrics.csv")
    losses = [float(r["value"]) for r in rows if r["name"] == "loss"]
    assert losses[-1] < losses[0]


def test_fp16_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="fp16"):
        make(toy_config(tmp_path, "trainer.precision=fp16"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_gpu_mixed_precision(tmp_path, precision):
    cfg = toy_config(tmp_path, "trainer.device=cuda", f"trainer.precision={precision}")
    info = distributed.setup("cuda")
    stage = ToyStage(cfg, info.device, dropout=0.0)
    trainer = Trainer(stage, cfg, info, ToyData(), None, collate_fn=toy_collate)
    trainer.fit()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    assert stage.seen_dtypes == {dtype}
    ckpt = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert bool(ckpt["state"]["scaler"]) == (precision == "fp16")


def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    """2 gloo ranks x batch 2 follow the same trajectory as 1 process x batch 4."""
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(
        ddp_toy_worker,
        args=(2, free_port(), str(tmp_path / "ddp"), str(out)),
        nprocs=2,
        join=True,
    )
    rank0 = load_file(str(out / "rank0.safetensors"))
    rank1 = load_file(str(out / "rank1.safetensors"))
    assert_same_state(rank0, rank1)

    cfg = toy_config(tmp_path / "single", "trainer.max_steps=6")
    stage, trainer = make(cfg, dropout=0.0)
    trainer.fit()
    for key, value in stage.nets["net"].state_dict().items():
        assert torch.allclose(value, rank0[key], atol=1e-6), key
    assert (tmp_path / "ddp" / "metrics.csv").is_file()


def test_epoch_budget_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = toy_config(
        tmp_path,
        "trainer.max_steps=null",
        "trainer.max_epochs=2",
        "log.tensorboard=true",
    )
    _, trainer = make(cfg)
    trainer.fit()
    # 24 items in batches of 4: 6 steps per epoch.
    assert (trainer.step, trainer.epoch, trainer.batch_in_epoch) == (12, 2, 0)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # The epoch-wise decay ran twice.
    assert trainer.optimizers["net"].param_groups[0]["lr"] == pytest.approx(
        0.01 * 0.9**2
    )
