"""Validation-driven training: plateau annealing, early stopping, best weights, history."""

from __future__ import annotations

import json

import pytest
import torch

from focalcodec import runtime as distributed
from focalcodec.errors import ConfigError
from focalcodec.train.config import load_config
from focalcodec.train.monitor import PlateauDecay, ValidationMonitor, load_best
from focalcodec.train.trainer import Trainer
from support import ToyData, ToyStage, assert_same_state, toy_collate, toy_config

LOCAL = distributed.DistInfo(0, 1, 0, torch.device("cpu"))
# 24 items in batches of 4: 6 steps per epoch; validation once per epoch.
EPOCHS = [
    "trainer.max_steps=null",
    "trainer.valid_every_epoch=true",
    "trainer.checkpoint_every=0",
    "trainer.monitor=mse",
    "optim.scheduler=constant",
]


def make(cfg, resume=False, valid=8):
    stage = ToyStage(cfg, LOCAL.device, dropout=0.0)
    trainer = Trainer(
        stage,
        cfg,
        LOCAL,
        ToyData(),
        ToyData(valid),
        collate_fn=toy_collate,
        resume=resume,
    )
    return stage, trainer


def test_plateau_decay_follows_relative_improvement():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = PlateauDecay(opt, factor=0.5, threshold=0.01)
    # 10 -> 9 is a 10 % gain (kept), 9 -> 8.95 is 0.56 % (cut), 8.95 -> 9.5 is a
    # loss (cut), 9.5 -> 5 is a gain (kept).
    cuts = [sched.observe(v) for v in (10.0, 9.0, 8.95, 9.5, 5.0)]
    assert cuts == [False, False, True, True, False]
    assert opt.param_groups[0]["lr"] == 0.25


def test_monitor_patience_and_best():
    mon = ValidationMonitor("loss", patience=2)
    results = [mon.record(i, i, v, {}) for i, v in enumerate([3.0, 2.0, 2.5, 2.0])]
    assert results == [True, True, False, False]
    assert (mon.best, mon.best_step, mon.stopped) == (2.0, 1, True)
    assert [h["step"] for h in mon.history] == [0, 1, 2, 3]


def test_validation_every_epoch_history_and_best(tmp_path):
    cfg = toy_config(
        tmp_path, *EPOCHS, "trainer.max_epochs=3", "trainer.keep_best=true"
    )
    _, trainer = make(cfg)
    trainer.fit()
    history = trainer.monitor.history
    assert [(h["step"], h["epoch"]) for h in history] == [(6, 1), (12, 2), (18, 3)]
    assert {"train_loss", "valid_mse", "lr_net"} <= set(history[0])
    # One checkpoint per epoch, no extra validation at the end.
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000006", "step_00000012", "step_00000018"]
    best = min(history, key=lambda h: h["valid_mse"])
    weights, meta = load_best(trainer.best_dir)
    assert meta["step"] == best["step"] and meta["value"] == best["valid_mse"]
    assert set(weights) == set(trainer.weights())


def test_early_stopping_stops_a_stalled_run(tmp_path):
    # lr 0: the validation loss never improves after the first epoch.
    cfg = toy_config(
        tmp_path,
        *EPOCHS,
        "trainer.max_epochs=50",
        "trainer.early_stop_patience=2",
        "optim.lr=0.0",
    )
    _, trainer = make(cfg)
    trainer.fit()
    assert trainer.monitor.stopped and trainer.epoch == 3
    assert len(trainer.monitor.history) == 3


def test_plateau_scheduler_in_the_loop(tmp_path):
    # A rate too small to move the weights: validations 2 and 3 do not improve, so
    # the rate is halved after each of them (recorded before the cut).
    cfg = toy_config(
        tmp_path,
        *EPOCHS,
        "trainer.max_epochs=3",
        "optim.lr=1e-12",
        "optim.scheduler=plateau",
        "optim.gamma=0.5",
    )
    _, trainer = make(cfg)
    trainer.fit()
    lrs = [h["lr_net"] for h in trainer.monitor.history]
    assert lrs == pytest.approx([1e-12, 1e-12, 0.5e-12])
    assert trainer.optimizers["net"].param_groups[0]["lr"] == pytest.approx(0.25e-12)


def test_resume_restores_the_monitor(tmp_path):
    extra = [*EPOCHS, "trainer.keep_best=true", "optim.scheduler=plateau"]
    extra += ["trainer.early_stop_patience=5"]
    whole = toy_config(tmp_path / "whole", *extra, "trainer.max_epochs=4")
    stage_a, trainer_a = make(whole)
    trainer_a.fit()

    make(toy_config(tmp_path / "part", *extra, "trainer.max_epochs=2"))[1].fit()
    stage_b, trainer_b = make(
        toy_config(tmp_path / "part", *extra, "trainer.max_epochs=4"), resume=True
    )
    assert len(trainer_b.monitor.history) == 2
    trainer_b.fit()
    assert_same_state(
        stage_a.nets["net"].state_dict(), stage_b.nets["net"].state_dict()
    )
    for a, b in zip(trainer_a.monitor.history, trainer_b.monitor.history, strict=True):
        assert a == pytest.approx(b)
    assert json.loads((trainer_b.best_dir / "meta.json").read_text())["step"] == (
        trainer_a.monitor.best_step
    )
    # A rerun of a finished run validates nothing more.
    _, trainer_c = make(
        toy_config(tmp_path / "part", *extra, "trainer.max_epochs=4"), resume=True
    )
    trainer_c.fit()
    assert len(trainer_c.monitor.history) == 4


def test_valid_batch_size_gives_the_same_means(tmp_path):
    cfg1 = toy_config(tmp_path / "a", "trainer.max_steps=3")
    cfg5 = toy_config(tmp_path / "b", "trainer.max_steps=3", "data.valid_batch_size=5")
    # 8 validation items: batches of 5 and 3 weigh by their size.
    m1 = make(cfg1)[1].fit()
    m5 = make(cfg5)[1].fit()
    assert m1["mse"] == pytest.approx(m5["mse"], rel=1e-6)


def test_unknown_monitor_is_one_clear_error(tmp_path):
    cfg = toy_config(tmp_path, *EPOCHS, "trainer.max_epochs=1", "trainer.monitor=wer")
    cfg.trainer.early_stop_patience = 3
    with pytest.raises(ConfigError, match="trainer.monitor 'wer'.*mse"):
        make(cfg)[1].fit()


def test_config_checks():
    with pytest.raises(ConfigError, match="scheduler"):
        load_config(None, ["optim.scheduler=newbob"])
    with pytest.raises(ConfigError, match="early_stop_patience"):
        load_config(None, ["trainer.early_stop_patience=0"])


def test_best_metric_is_separate_from_the_annealed_one(tmp_path):
    # The plateau rule reads trainer.monitor, best weights and patience best_metric.
    base = [*EPOCHS, "trainer.max_epochs=2", "trainer.keep_best=true"]
    base += ["optim.scheduler=plateau"]
    cfg = toy_config(tmp_path / "a", *base, "trainer.best_metric=wer")
    with pytest.raises(ConfigError, match="trainer.best_metric 'wer'.*mse"):
        make(cfg)[1].fit()
    cfg = toy_config(tmp_path / "b", *base, "trainer.monitor=wer")
    cfg.trainer.best_metric = "mse"
    with pytest.raises(ConfigError, match="trainer.monitor 'wer'"):
        make(cfg)[1].fit()
    # Without annealing, the monitor key is not needed at all.
    cfg = toy_config(tmp_path / "c", *base, "trainer.monitor=wer")
    cfg.trainer.best_metric = "mse"
    cfg.optim.scheduler = "constant"
    _, trainer = make(cfg)
    trainer.fit()
    assert load_best(trainer.best_dir)[1]["monitor"] == "mse"
