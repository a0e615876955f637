"""``focalcodec lm train``: the recipe, the run folder and the trainer.

A recipe is one YAML file (see ``configs/lm/``) with the blocks ``model``, ``data``,
``optim``, ``log`` and ``trainer``; the last three are the codec trainer's own blocks
(:mod:`focalcodec.train.config`), so budgets, precision, checkpoints and ``torchrun``
work the same way::

    focalcodec lm train --config configs/lm/demo.yaml data.source=tokens/ --resume
    torchrun --nproc-per-node 4 -m focalcodec lm train --config ... trainer.precision=bf16
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import runtime
from ..errors import ConfigError
from ..train.config import (
    LogConfig,
    OptimConfig,
    TrainerConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    read_recipe,
)

__all__ = ["LMDataConfig", "LMModelConfig", "LMTrainConfig", "load_lm_config", "run"]


@dataclass
class LMModelConfig:
    """Architecture (the codebook, rate and codec come from the token folder)."""

    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    context: int = 256
    dropout: float = 0.0


@dataclass
class LMDataConfig:
    """The token folder, its split and the batching.

    ``batch_size`` counts items per step (per process); they are packed into blocks of
    ``model.context + 1`` tokens, so the number of blocks per step varies.
    """

    source: str = ""
    train_split: str | None = "train"
    valid_split: str | None = None
    valid_fraction: float = 0.05
    max_valid_tokens: int | None = 200_000
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class LMTrainConfig:
    """A token-LM training recipe."""

    stage: str = "lm"
    run_dir: str = "runs/lm"
    model: LMModelConfig = field(default_factory=LMModelConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=1e-3, betas=[0.9, 0.95], weight_decay=0.1, grad_clip=1.0
        )
    )
    log: LogConfig = field(default_factory=LogConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self) -> None:
        """Raise ConfigError on the first value the types cannot rule out."""
        checks = [
            (self.stage == "lm", "stage", "must be lm"),
            (bool(self.data.source), "data.source", "must name a token folder"),
            (self.data.batch_size > 0, "data.batch_size", "must be positive"),
            (0 <= self.data.valid_fraction < 1, "data.valid_fraction", "in [0, 1)"),
            (self.trainer.precision in ("fp32", "bf16", "fp16"), "trainer.precision",
             "must be fp32, bf16 or fp16"),
            (self.optim.scheduler in ("constant", "exponential"), "optim.scheduler",
             "must be constant or exponential"),
            (self.optim.interval in ("epoch", "step"), "optim.interval",
             "must be epoch or step"),
            (self.log.every > 0, "log.every", "must be positive"),
        ]  # fmt: skip
        for ok, key, message in checks:
            if not ok:
                raise ConfigError(f"config key '{key}' {message}")


def load_lm_config(
    path: str | Path | None, overrides: list[str] | None = None
) -> LMTrainConfig:
    """Read a YAML recipe (or the defaults), apply ``key.path=value`` overrides, check."""
    data = read_recipe(path)
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = config_from_dict(data, LMTrainConfig)
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from exc
    return cfg


def _datasets(cfg: LMTrainConfig):
    from .data import LMCollate, Windows, open_tokens, split_items, token_info
    from .model import LMConfig

    ds = open_tokens(cfg.data.source)
    info = token_info(ds)
    lm_cfg = LMConfig(
        codebook_size=info["codebook_size"],
        token_rate=info["token_rate"],
        codec_hash=info["config_hash"],
        **config_to_dict(cfg.model),
    )
    train, valid_idx = split_items(
        ds,
        cfg.data.train_split,
        cfg.data.valid_split,
        cfg.data.valid_fraction,
        cfg.trainer.seed,
    )
    block_len = lm_cfg.context + 1
    valid = None
    if valid_idx:
        valid = Windows(
            ds, valid_idx, block_len, lm_cfg.separator, cfg.data.max_valid_tokens
        )
    return lm_cfg, train, valid, LMCollate(block_len, lm_cfg.separator)


def run(
    cfg: LMTrainConfig, resume: bool = False, force: bool = False
) -> dict[str, float]:
    """Train a token LM in this process (one of many under ``torchrun``).

    Parameters
    ----------
    cfg
        Validated recipe.
    resume
        Continue from the newest checkpoint of ``cfg.run_dir``.
    force
        Start over in a run folder that already holds a run.

    Returns
    -------
        The final validation metrics (empty on other processes than the main one).
    """
    from ..train.runner import run_trainer
    from ..train.trainer import Trainer
    from .stage import LMStage

    def make_trainer(dist: runtime.DistInfo) -> Trainer:
        lm_cfg, train, valid, collate = _datasets(cfg)
        torch.manual_seed(cfg.trainer.seed)  # the same initial weights on every rank
        stage = LMStage(cfg, dist.device, lm_cfg)
        return Trainer(stage, cfg, dist, train, valid, collate, resume=resume)

    return run_trainer(cfg, resume, force, make_trainer)
