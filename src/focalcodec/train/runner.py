"""From a resolved config to a finished run: stage, data, run folder, trainer.

This is what ``focalcodec train <stage>`` calls in every process; ``torchrun``
starts one process per GPU (or CPU worker) and each joins the group in
:func:`focalcodec.runtime.setup`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import runtime as distributed
from ..errors import ConfigError
from .cache import FeatureCache
from .config import TrainConfig, config_to_dict
from .data import AudioDataset, AudioEntry, list_entries, split_entries
from .stage import Stage
from .trainer import Trainer

__all__ = ["build_datasets", "build_stage", "prepare_run_dir", "run"]

# Outputs a run writes; --force (start over) removes these and nothing else.
_RUN_OUTPUTS = (
    "checkpoints",
    "samples",
    "export",
    "best",
    "tensorboard",
    "metrics.csv",
)


def _stage_classes() -> dict[str, type[Stage]]:
    from .causal import CausalEncoderStage
    from .decoder import DecoderStage
    from .quantizer import QuantizerStage

    return {cls.name: cls for cls in (QuantizerStage, DecoderStage, CausalEncoderStage)}


def build_stage(cfg: TrainConfig, device: torch.device) -> Stage:
    """Build the stage named by ``cfg.stage``; the seed makes the random init repeatable."""
    torch.manual_seed(cfg.trainer.seed)
    return _stage_classes()[cfg.stage](cfg, device)


def _filter(entries: list[AudioEntry], cfg: TrainConfig) -> list[AudioEntry]:
    keep = [
        e for e in entries if e.duration is None or e.duration >= cfg.data.min_seconds
    ]
    return keep


def build_datasets(
    cfg: TrainConfig, stage: Stage, dist: distributed.DistInfo
) -> tuple[AudioDataset, AudioDataset | None]:
    """Training and validation datasets; builds the feature cache first if asked.

    Every process builds its share of the cache, then all wait for each other.
    """
    dcfg = cfg.data
    entries = _filter(list_entries(dcfg.source, dcfg.root, dcfg.extensions), cfg)
    train, valid = split_entries(
        entries,
        dcfg.train_split,
        dcfg.valid_split,
        dcfg.valid_fraction,
        cfg.trainer.seed,
    )
    if dcfg.max_items:
        train = train[: dcfg.max_items]
    valid = valid[: dcfg.max_valid_items]
    spec = stage.data_spec()
    cache = None
    if dcfg.cache_features:
        if spec.cache_key is None:
            raise ConfigError(f"stage '{cfg.stage}' cannot use data.cache_features")
        root = Path(dcfg.cache_dir) if dcfg.cache_dir else Path(cfg.run_dir) / "cache"
        cache = FeatureCache(root, spec.cache_key, dcfg.cache_dtype)
        paths = [e.path for e in train + valid]
        cache.build(paths, stage.encode_file, dist.rank, dist.world_size, dist.is_main)
        distributed.barrier()
    common = dict(
        input_rate=spec.input_rate,
        hop=spec.hop,
        target_rate=spec.target_rate,
        cache=cache,
        seed=cfg.trainer.seed,
    )
    train_set = AudioDataset(
        train,
        crop_samples=dcfg.crop_samples,
        load_sig=spec.needs_audio or cache is None,
        **common,
    )
    valid_set = None
    if valid:
        limit = dcfg.valid_max_seconds
        max_samples = int(limit * spec.input_rate) if limit else None
        valid_set = AudioDataset(valid, max_samples=max_samples, **common)
    return train_set, valid_set


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to mix runs: an existing run needs ``resume`` or ``force``.

    With ``force`` (and no ``resume``) the previous run's outputs are removed.
    """
    existing = [name for name in _RUN_OUTPUTS if (run_dir / name).exists()]
    if not existing or resume:
        return
    if not force:
        raise ConfigError(
            f"run folder {run_dir} already holds a run ({', '.join(existing)}); pass "
            "--resume to continue it or --force to start over"
        )
    for name in existing:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()


def _write_config(cfg: Any) -> None:
    import yaml

    from ..files.atomic import atomic_write

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    with atomic_write(Path(cfg.run_dir) / "config.yaml", force=True) as fileobj:
        fileobj.write(text.encode())


def run_trainer(
    cfg: Any,
    resume: bool,
    force: bool,
    make_trainer: Callable[[distributed.DistInfo], Trainer],
) -> dict[str, float]:
    """Join the process group, prepare ``cfg.run_dir`` (main process: the run folder
    and its ``config.yaml``), train what ``make_trainer(dist)`` builds, leave together.

    Shared by the codec stages and the token LM: ``cfg``
    is any recipe with ``run_dir`` and a ``trainer`` block. Returns the final
    validation metrics (empty on processes other than the main one).
    """
    dist = distributed.setup(cfg.trainer.device)
    try:
        run_dir = Path(cfg.run_dir)
        if dist.is_main:
            prepare_run_dir(run_dir, resume, force)
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_config(cfg)
        distributed.barrier()
        if cfg.trainer.threads:
            # Fewer intra-op threads than cores avoids oversubscription when several
            # processes (DDP workers, loader workers) share a machine.
            torch.set_num_threads(cfg.trainer.threads)
        if cfg.trainer.deterministic:
            torch.use_deterministic_algorithms(True)
        metrics = make_trainer(dist).fit()
        # Leave the group together: a process tearing down gloo while its peer is still
        # finishing a collective can make the peer abort.
        distributed.barrier()
        return metrics
    finally:
        distributed.cleanup()


def run(
    cfg: TrainConfig, resume: bool = False, force: bool = False
) -> dict[str, float]:
    """Train one stage in this process (one of many under ``torchrun``).

    Parameters
    ----------
    cfg
        Validated config.
    resume
        Continue from the newest checkpoint of ``cfg.run_dir``.
    force
        Start over in a run folder that already holds a run.

    Returns
    -------
        The final validation metrics (empty on non-main processes).
    """

    def make_trainer(dist: distributed.DistInfo) -> Trainer:
        stage = build_stage(cfg, dist.device)
        train_set, valid_set = build_datasets(cfg, stage, dist)
        return Trainer(stage, cfg, dist, train_set, valid_set, resume=resume)

    return run_trainer(cfg, resume, force, make_trainer)
