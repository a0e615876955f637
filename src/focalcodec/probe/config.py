"""Probe recipes: nested dataclasses filled from defaults, a YAML file and overrides.

The defaults are the papers' protocol (after DASB): a 2-layer BiLSTM of 512 units,
AdamW (lr 1e-4, betas 0.8/0.99, weight decay 0.01), batch 16, dropout 0.1, gradient
clipping 0.01, the learning rate times 0.9 after an epoch whose validation loss improved
by less than 0.25 % (relative), early stopping and at most 100 epochs. The best weights
(tested at the end) and the patience follow the validation error rate (for ASR the unit
error rate of greedy decoding), as DASB keeps the checkpoint of the best error rate;
equal error rates are ranked by the validation loss (``error_then_loss``). The ``optim``,
``trainer`` and ``log`` blocks are those of :mod:`focalcodec.train.config`, so the
shared trainer runs them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..train.config import (
    DataConfig,
    LogConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    read_recipe,
)
from .units import parse_units

__all__ = ["DEFAULTS", "ProbeConfig", "load_probe_config", "train_config"]

TASKS = ("classify", "asr")
INPUTS = ("tokens", "features")

# The protocol, as a nested mapping that recipes and overrides are merged onto.
DEFAULTS: dict[str, Any] = {
    "input": "tokens",
    "net": {"hidden": 512, "layers": 2, "dropout": 0.1, "norm": True},
    "data": {"batch_size": 16},
    "optim": {
        "lr": 1.0e-4,
        "betas": [0.8, 0.99],
        "weight_decay": 0.01,
        "grad_clip": 0.01,
        "scheduler": "plateau",
        "gamma": 0.9,
        "threshold": 0.0025,
    },
    "trainer": {
        "max_steps": None,
        "max_epochs": 100,
        "valid_every": 0,
        "checkpoint_every": 0,
        "valid_every_epoch": True,
        "monitor": "loss",
        "best_metric": "error_then_loss",
        "early_stop_patience": 10,
        "keep_best": True,
        "keep_checkpoints": 1,
        "num_samples": 0,
        "export": False,
    },
    "log": {"every": 10, "progress": False},
}


@dataclass
class ProbeDataConfig:
    """Which entries, which label or transcript, which splits, where the cache is.

    ``where`` keeps the entries whose field matches a glob (``id`` is the manifest
    path); ``resplit`` ignores the manifest's ``split`` field and carves train /
    valid / test from all entries. ``crop_seconds`` trains classifiers on random
    crops (validation and test see whole files); ``max_train_seconds`` leaves longer
    files out of training (they set the padded length, hence the time, of a batch).
    """

    manifest: str = ""
    root: str | None = None
    label: str | None = None
    text_field: str = "text"
    units: str = "char"
    where: dict[str, str] = field(default_factory=dict)
    resplit: bool = False
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    max_train_seconds: float | None = None
    crop_seconds: float | None = None
    batch_size: int = 16
    valid_batch_size: int = 16
    num_workers: int = 0
    cache_dir: str | None = None
    feature_dtype: str = "float16"


@dataclass
class ProbeNetConfig:
    """BiLSTM size and dropout; ``norm`` normalises the pooled features of a
    classifier (see :mod:`focalcodec.probe.nets`)."""

    hidden: int = 512
    layers: int = 2
    dropout: float = 0.1
    norm: bool = True


@dataclass
class ProbeConfig:
    """A full probe recipe."""

    task: str = "classify"
    input: str = "tokens"
    data: ProbeDataConfig = field(default_factory=ProbeDataConfig)
    net: ProbeNetConfig = field(default_factory=ProbeNetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> None:
        """Raise ConfigError on the first value the types cannot rule out."""
        _check(self.task in TASKS, "task", "must be classify or asr")
        _check(self.input in INPUTS, "input", "must be tokens or features")
        data = self.data
        if self.task == "classify":
            _check(bool(data.label), "data.label", "is required for classify")
        else:
            parse_units(data.units)
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(data, name)
            _check(0.0 < value < 0.5, f"data.{name}", "must be in (0, 0.5)")
        _check(data.batch_size > 0, "data.batch_size", "must be positive")
        _check(data.valid_batch_size > 0, "data.valid_batch_size", "must be positive")
        _check(
            data.feature_dtype in ("float32", "float16", "bfloat16"),
            "data.feature_dtype",
            "must be float32, float16 or bfloat16",
        )
        _check(self.net.hidden > 0, "net.hidden", "must be positive")
        _check(self.net.layers > 0, "net.layers", "must be positive")
        _check(0.0 <= self.net.dropout < 1.0, "net.dropout", "must be in [0, 1)")
        budget = self.trainer.max_epochs
        _check(budget is not None and budget > 0, "trainer.max_epochs", "must be > 0")
        # The shared loop's own checks (scheduler names, precision, ...); its stage
        # check is for codec stages, so borrow one of their names for the call.
        cfg = train_config(self, ".")
        cfg.stage = "quantizer"
        cfg.validate()


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"probe config key '{key}' {message}")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_probe_config(
    path: str | Path | None, overrides: list[str] | None = None
) -> ProbeConfig:
    """Defaults, then the YAML recipe ``path``, then ``key.path=value`` overrides."""
    data = read_recipe(path, "probe recipe")
    merged = apply_overrides(_merge(DEFAULTS, data), list(overrides or []))
    where = f"{path}: " if path is not None else ""
    try:
        cfg = config_from_dict(merged, ProbeConfig)
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return cfg


def train_config(cfg: ProbeConfig, run_dir: str | Path) -> TrainConfig:
    """The shared trainer's config for one probe run."""
    data = DataConfig(
        batch_size=cfg.data.batch_size,
        valid_batch_size=cfg.data.valid_batch_size,
        num_workers=cfg.data.num_workers,
    )
    return TrainConfig(
        stage="probe",
        run_dir=str(run_dir),
        data=data,
        optim=cfg.optim,
        log=cfg.log,
        trainer=cfg.trainer,
    )


def probe_config_dict(cfg: ProbeConfig) -> dict[str, Any]:
    """Plain nested dict (for results.json and the settings check of a rerun)."""
    return config_to_dict(cfg)
