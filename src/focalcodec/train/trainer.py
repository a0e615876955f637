"""The shared training loop: one process on CPU or GPU, or many through ``torchrun``.

Exact resume rests on three rules:

* the data order and crops depend only on ``(seed, epoch, index)``
  (:mod:`focalcodec.train.data`), and the sampler can skip the batches already done;
* before every step the global generator is re-seeded from ``(seed, step, rank)``, so
  dropout and any other randomness do not depend on what ran before (validation,
  feature caching, a restart);
* a checkpoint holds the trained weights and the optimizer, scheduler and gradient
  scaler states, plus the step, epoch and position in the epoch.

So stopping after step k and resuming gives bit-identical parameters to an
uninterrupted run on the same hardware and software.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from .. import runtime as distributed
from ..errors import CheckpointError, ConfigError
from ..files.atomic import atomic_folder
from .checkpoint import (
    flat_weights,
    latest_checkpoint,
    load_checkpoint,
    load_flat_weights,
    save_checkpoint,
)
from .config import OptimConfig, TrainConfig, config_to_dict
from .data import EpochBatchSampler, collate
from .logger import MetricLogger
from .monitor import PlateauDecay, ValidationMonitor, save_best
from .stage import Sample, Stage

__all__ = ["Precision", "Trainer"]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Stage buffers (STFT windows, BSQ constants) are identical on every rank: skip the
# per-forward buffer broadcast. Newer torch renamed the option.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


class Precision:
    """Autocast and loss scaling for one precision setting.

    ``fp16`` needs CUDA and uses a gradient scaler; ``bf16`` works on CPU and GPU
    without one; ``fp32`` disables autocast.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError(
                "trainer.precision=fp16 needs a CUDA device; use bf16 on CPU"
            )
        self.device = device
        self.dtype = _DTYPES[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for forward passes (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        grad_clip: float | None,
    ) -> float:
        """Backward, optional clipping, optimizer step; returns the gradient norm."""
        optimizer.zero_grad(set_to_none=True)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        max_norm = grad_clip if grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        return float(norm)

    def update(self) -> None:
        """Adapt the loss scale once per iteration (after every optimizer stepped)."""
        if self.scaler is not None:
            self.scaler.update()


class _Context:
    """The :class:`~focalcodec.train.stage.StepContext` handed to stages."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.step = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return self._trainer.precision.autocast()

    def optimize(self, name: str, loss: torch.Tensor) -> dict[str, float]:
        t = self._trainer
        norm = t.precision.backward_step(loss, t.optimizers[name], t.clips[name])
        return {f"grad_norm_{name}": norm}


def _build_optimizer(
    params: list[nn.Parameter], cfg: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    opt = torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    sched = None
    if cfg.scheduler == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    elif cfg.scheduler == "plateau":
        sched = PlateauDecay(opt, cfg.gamma, cfg.threshold)
    return opt, sched


class Trainer:
    """Run a :class:`~focalcodec.train.stage.Stage` to its step, epoch or time budget.

    Parameters
    ----------
    stage
        The recipe, already built on ``dist.device``.
    cfg
        The resolved config (``trainer``, ``data`` and ``log`` blocks are used here).
    dist
        Process placement from :func:`focalcodec.runtime.setup`.
    train_set, valid_set
        Datasets yielding dicts of tensors; ``set_epoch(epoch)`` is called when the
        dataset has it.
    collate_fn
        Batch builder.
    resume
        Continue from the newest checkpoint in ``cfg.run_dir`` (if there is one).

    Attributes
    ----------
    monitor
        :class:`~focalcodec.train.monitor.ValidationMonitor`: per-validation history
        (train means, validation metrics, learning rates), best value, early stopping.
    """

    def __init__(
        self,
        stage: Stage,
        cfg: TrainConfig,
        dist: distributed.DistInfo,
        train_set: Dataset,
        valid_set: Dataset | None = None,
        collate_fn: Callable = collate,
        resume: bool = False,
    ) -> None:
        self.stage = stage
        self.cfg = cfg
        self.dist = dist
        self.run_dir = Path(cfg.run_dir)
        self.precision = Precision(cfg.trainer.precision, dist.device)
        self.train_set = train_set
        self.valid_set = valid_set
        self.collate_fn = collate_fn
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, tuple[Any, str]] = {}
        self.clips: dict[str, float | None] = {}
        for name, (params, ocfg) in stage.optim_groups().items():
            opt, sched = _build_optimizer(params, ocfg)
            self.optimizers[name] = opt
            self.clips[name] = ocfg.grad_clip
            if sched is not None:
                # The plateau rule follows validations, not the step/epoch clock.
                every = "valid" if isinstance(sched, PlateauDecay) else ocfg.interval
                self.schedulers[name] = (sched, every)
        tcfg = cfg.trainer
        best_key = tcfg.best_metric or tcfg.monitor
        self.monitor = ValidationMonitor(best_key, tcfg.early_stop_patience)
        self._annealing = any(e == "valid" for _, e in self.schedulers.values())
        self._tracking = bool(tcfg.keep_best or tcfg.early_stop_patience)
        self.sampler = EpochBatchSampler(
            len(train_set),
            cfg.data.batch_size,
            shuffle=True,
            seed=cfg.trainer.seed,
            rank=dist.rank,
            world_size=dist.world_size,
        )
        self.resumed_from = self._resume() if resume else None
        stage.wrap(self._wrap)
        self.ctx = _Context(self)

    def _wrap(self, net: nn.Module) -> nn.Module:
        if not self.dist.distributed or not any(
            p.requires_grad for p in net.parameters()
        ):
            return net
        ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, **_NO_BUFFER_SYNC)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scheduler, scaler and loop position (no weights)."""
        scaler = self.precision.scaler
        return {
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, (s, _) in self.schedulers.items()},
            "scaler": scaler.state_dict() if scaler is not None else {},
            "monitor": self.monitor.state_dict(),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
            },
        }

    def weights(self) -> dict[str, torch.Tensor]:
        """Flat ``<module>.<param>`` map of the trained modules."""
        return flat_weights(self.stage.nets)

    def _resume(self) -> int | None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return None
        ckpt = load_checkpoint(path)
        if ckpt["meta"].get("stage") != self.cfg.stage:
            raise CheckpointError(
                f"{path} was written by stage '{ckpt['meta'].get('stage')}', not "
                f"'{self.cfg.stage}'"
            )
        load_flat_weights(self.stage.nets, ckpt["weights"], path)
        state = ckpt["state"]
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, (sched, _) in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        if self.precision.scaler is not None and state["scaler"]:
            self.precision.scaler.load_state_dict(state["scaler"])
        if "monitor" in state:  # absent from checkpoints of older versions
            self.monitor.load_state_dict(state["monitor"])
        progress = state["progress"]
        self.step = int(progress["step"])
        self.epoch = int(progress["epoch"])
        self.batch_in_epoch = int(progress["batch_in_epoch"])
        return self.step

    def save(self) -> Path | None:
        """Write a checkpoint (main process) and wait for every process."""
        path = None
        if self.dist.is_main:
            meta = {
                "stage": self.cfg.stage,
                "epoch": self.epoch,
                "config": config_to_dict(self.cfg),
                **self.stage.describe(),
            }
            path = save_checkpoint(
                self.run_dir,
                self.step,
                self.weights(),
                self.state_dict(),
                meta,
                keep=self.cfg.trainer.keep_checkpoints,
            )
        distributed.barrier()
        return path

    # ------------------------------------------------------------------ loop

    def _loader(self) -> DataLoader:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch)
        return DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            collate_fn=self.collate_fn,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.dist.device.type == "cuda",
        )

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dev = self.dist.device
        return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}

    def _seed_step(self) -> None:
        # One seed per (run seed, step, rank): see the module docstring.
        seed = (self.cfg.trainer.seed * 1_000_003 + self.step) * 1_009 + self.dist.rank
        torch.manual_seed(seed % (2**63))

    def _finished(self, started: float) -> bool:
        tcfg = self.cfg.trainer
        done = tcfg.max_steps is not None and self.step >= tcfg.max_steps
        done |= tcfg.max_epochs is not None and self.epoch >= tcfg.max_epochs
        if tcfg.max_minutes is not None:
            # Clocks differ between processes: agree on the decision, or DDP hangs.
            late = time.time() - started >= 60.0 * tcfg.max_minutes
            done |= distributed.any_rank(late, self.dist.device)
        return done or self.monitor.stopped

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        self._step_schedulers("epoch")

    def _step_schedulers(self, interval: str) -> None:
        with warnings.catch_warnings():
            # The schedule follows the step/epoch clock even while an optimizer has not
            # stepped yet (discriminator warm-up, a skipped fp16 step): PyTorch's
            # warning about that order is expected here.
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step()")
            for sched, every in self.schedulers.values():
                if every == interval:
                    sched.step()

    def _train_one(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self._seed_step()
        self.stage.train(True)
        self.ctx.step = self.step
        metrics = self.stage.train_step(self._to_device(batch), self.ctx)
        self.monitor.add_train(metrics)
        self.precision.update()
        self.step += 1
        self.batch_in_epoch += 1
        self._step_schedulers("step")
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:
            self._end_epoch()
        return metrics

    def fit(self) -> dict[str, float]:
        """Train until a budget is reached; returns the last validation metrics."""
        logger = None
        if self.dist.is_main:
            logger = MetricLogger(
                self.run_dir, self.cfg.log.tensorboard, resume_step=self.resumed_from
            )
        try:
            return self._fit(logger)
        finally:
            if logger is not None:
                logger.close()

    def _fit(self, logger: MetricLogger | None) -> dict[str, float]:
        tcfg = self.cfg.trainer
        started = time.time()
        bar = self._progress_bar()
        meter = _Throughput(
            getattr(self.train_set, "input_rate", None),
            getattr(self.train_set, "hop", None),
        )
        last_saved = None
        valid_metrics: dict[str, float] = {}
        while not self._finished(started):
            for batch in self._loader():
                epoch = self.epoch
                meter.add(batch)
                metrics = self._train_one(batch)
                if bar is not None:
                    bar.update()
                    bar.set_postfix(
                        {k: f"{v:.3g}" for k, v in list(metrics.items())[:3]}
                    )
                if self.step % self.cfg.log.every == 0:
                    metrics = {**metrics, **meter.read(), **self._lrs()}
                    metrics = distributed.all_reduce_mean(metrics, self.dist.device)
                    if logger is not None:
                        logger.log(self.step, epoch, "train", metrics)
                if tcfg.valid_every and self.step % tcfg.valid_every == 0:
                    valid_metrics = self._validate_round(logger)
                epoch_end = tcfg.valid_every_epoch and epoch != self.epoch
                if epoch_end and self.monitor.last_step != self.step:
                    valid_metrics = self._validate_round(logger)
                if epoch_end or (
                    tcfg.checkpoint_every and self.step % tcfg.checkpoint_every == 0
                ):
                    self.save()
                    last_saved = self.step
                if self._finished(started) or epoch != self.epoch:
                    break
        if bar is not None:
            bar.close()
        if last_saved != self.step:
            self.save()
        if self.monitor.last_step != self.step:
            valid_metrics = self._validate_round(logger)
        if tcfg.export:
            self.export(self.run_dir / "export", force=True)
        return valid_metrics

    def _progress_bar(self):
        if not (self.dist.is_main and self.cfg.log.progress):
            return None
        from tqdm import tqdm

        total = self.cfg.trainer.max_steps
        return tqdm(total=total, initial=self.step, desc=self.cfg.stage, unit="step")

    def _lrs(self) -> dict[str, float]:
        return {f"lr_{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()}

    # ------------------------------------------------------------ validation

    @property
    def best_dir(self) -> Path:
        """Folder of the best weights (``trainer.keep_best``): model.safetensors and
        meta.json, in the checkpoint key layout."""
        return self.run_dir / "best"

    def _validate_round(self, logger: MetricLogger | None) -> dict[str, float]:
        """Validate, then anneal, check patience and keep the best weights."""
        metrics = self.validate(logger)
        train = distributed.all_reduce_mean(
            self.monitor.train_means(), self.dist.device
        )
        value = None
        validated = self.valid_set is not None and len(self.valid_set) > 0
        if self._tracking and validated:
            option = "best_metric" if self.cfg.trainer.best_metric else "monitor"
            value = self._shared_value(metrics, self.monitor.key, option)
        entry = {f"train_{k}": v for k, v in train.items()}
        entry.update({f"valid_{k}": v for k, v in metrics.items()})
        entry.update(self._lrs())
        improved = self.monitor.record(self.step, self.epoch, value, entry)
        if self._annealing and validated:
            key = self.cfg.trainer.monitor
            anneal = self._shared_value(metrics, key, "monitor")
            for sched, every in self.schedulers.values():
                if every == "valid":
                    sched.observe(anneal)
        if improved and self.cfg.trainer.keep_best:
            self._save_best(value)
        return metrics

    def _shared_value(self, metrics: dict[str, float], key: str, option: str) -> float:
        """Validation metric ``key`` of the main process, on every process."""
        mine = 0.0
        if self.dist.is_main:
            # NaN marks a missing metric; a diverged (NaN) value counts as +inf.
            mine = metrics.get(key, math.nan)
            if key in metrics and math.isnan(mine):
                mine = math.inf
        shared = distributed.all_reduce_mean({key: float(mine)}, self.dist.device)
        value = shared[key] * self.dist.world_size
        if math.isnan(value):
            names = ", ".join(sorted(metrics)) or "see the main process"
            raise ConfigError(
                f"trainer.{option} '{key}' is not a validation metric of stage "
                f"'{self.cfg.stage}' (it reports: {names})"
            )
        return value

    def _save_best(self, value: float) -> None:
        if self.dist.is_main:
            meta = {"step": self.step, "epoch": self.epoch, "value": value}
            meta["monitor"] = self.monitor.key
            save_best(self.best_dir, self.weights(), meta)
        distributed.barrier()

    def validate(self, logger: MetricLogger | None = None) -> dict[str, float]:
        """Average validation metrics and write audio samples (main process only)."""
        metrics: dict[str, float] = {}
        if self.dist.is_main and self.valid_set is not None and len(self.valid_set):
            metrics = self._validate()
            if logger is not None:
                logger.log(self.step, self.epoch, "valid", metrics)
        distributed.barrier()
        return metrics

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.stage.train(False)
        # Data blocks without the option (the token LM's) validate item by item.
        size = getattr(self.cfg.data, "valid_batch_size", 1)
        loader = DataLoader(self.valid_set, batch_size=size, collate_fn=self.collate_fn)
        totals: dict[str, float] = {}
        samples: list[Sample] = []
        for index, batch in enumerate(loader):
            batch = self._to_device(batch)
            # valid_step returns batch means: weight them by the batch size.
            size = int(next(iter(batch.values())).shape[0])
            for key, value in self.stage.valid_step(batch).items():
                totals[key] = totals.get(key, 0.0) + value * size
            if index < self.cfg.trainer.num_samples:
                samples += self.stage.samples(batch, index)
        self.stage.train(True)
        if samples:
            _write_samples(samples, self.run_dir / "samples" / f"step_{self.step:08d}")
        count = max(len(self.valid_set), 1)
        return {k: v / count for k, v in totals.items()}

    def export(self, folder: Path, force: bool = False) -> None:
        """Write the trained codec (main process) in the ``from_pretrained`` layout."""
        if self.dist.is_main:
            atomic_folder(self.stage.export, Path(folder), force=force)
        distributed.barrier()


class _Throughput:
    """Items and audio seconds per wall-clock second between two reads."""

    def __init__(self, rate: int | None, hop: int | None) -> None:
        self.rate = rate
        self.hop = hop
        self.items = 0
        self.samples = 0
        self.since = time.perf_counter()

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        first = next(iter(batch.values()))
        self.items += int(first.shape[0])
        if "sig_len" in batch:
            self.samples += int(batch["sig_len"].sum())
        elif "feats_len" in batch and self.hop:
            self.samples += int(batch["feats_len"].sum()) * self.hop

    def read(self) -> dict[str, float]:
        now = time.perf_counter()
        span = max(now - self.since, 1e-9)
        out = {"items_per_s": self.items / span}
        if self.rate:
            out["audio_s_per_s"] = self.samples / self.rate / span
        self.items = self.samples = 0
        self.since = now
        return out


def _write_samples(samples: list[Sample], folder: Path) -> None:
    import soundfile as sf

    from ..files.atomic import atomic_write
    from .plots import plot_spectrograms

    folder.mkdir(parents=True, exist_ok=True)
    panels = []
    for s in samples:
        for tag, wav, rate in (
            ("reference", s.reference, s.reference_rate),
            ("output", s.output, s.output_rate),
        ):
            wav = wav.detach().float().cpu().clamp(-1.0, 1.0)
            with atomic_write(folder / f"{s.name}_{tag}.wav", force=True) as fileobj:
                sf.write(fileobj, wav.numpy(), rate, format="WAV", subtype="PCM_16")
            panels.append((f"{s.name} {tag}", wav, rate))
    plot_spectrograms(panels, folder / "spectrograms.png")
