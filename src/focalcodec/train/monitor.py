"""What the loop does with validation results: learning-rate annealing, early
stopping, the best weights and a per-validation history.

All of it is state that a checkpoint carries (:meth:`ValidationMonitor.state_dict`), so
a resumed run anneals, stops and remembers its best result exactly as an uninterrupted
one would. Lower values of the monitored metric are better.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files.atomic import atomic_folder

__all__ = ["PlateauDecay", "ValidationMonitor", "load_best", "save_best"]


class PlateauDecay:
    """Multiply the learning rate by ``factor`` when the monitored value stalls.

    After every validation the relative improvement over the previous validation,
    ``(previous - value) / |previous|``, is compared with ``threshold``; below it, every
    parameter group's ``lr`` is multiplied by ``factor``. This is the "new bob" rule of
    SpeechBrain recipes (DASB uses factor 0.9 and threshold 0.0025).

    Parameters
    ----------
    optimizer
        The optimizer whose learning rate is annealed.
    factor
        Multiplier applied on a stall, in (0, 1].
    threshold
        Smallest relative improvement that counts as progress.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, factor: float, threshold: float
    ) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.threshold = threshold
        self.previous: float | None = None

    def observe(self, value: float) -> bool:
        """Take one validation value; returns True when the learning rate was cut."""
        cut = False
        if self.previous is not None:
            scale = abs(self.previous)
            gain = (self.previous - value) / scale if scale > 0 else 0.0
            if not gain >= self.threshold:  # also true for NaN
                for group in self.optimizer.param_groups:
                    group["lr"] *= self.factor
                cut = True
        self.previous = value
        return cut

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = state["previous"]


class ValidationMonitor:
    """Best value, patience and history of one validation metric.

    Parameters
    ----------
    key
        Name of the validation metric to follow (lower is better).
    patience
        Stop after this many validations in a row without a new best; None never
        stops.
    """

    def __init__(self, key: str, patience: int | None = None) -> None:
        self.key = key
        self.patience = patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0
        self.stopped = False
        self.last_step: int | None = None
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def add_train(self, metrics: dict[str, float]) -> None:
        """Accumulate the metrics of one training step (averaged per validation)."""
        for name, value in metrics.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1

    def train_means(self) -> dict[str, float]:
        """Mean training metrics since the previous validation, then reset."""
        count = max(self._count, 1)
        means = {k: v / count for k, v in sorted(self._sums.items())}
        self._sums, self._count = {}, 0
        return means

    def record(
        self,
        step: int,
        epoch: int,
        value: float | None,
        entry: dict[str, float],
    ) -> bool:
        """Record one validation; returns True when ``value`` is a new best.

        Parameters
        ----------
        step, epoch
            Loop position of the validation.
        value
            The monitored metric, or None when it is not followed.
        entry
            Everything else to keep in the history (train means, valid metrics, lr).
        """
        self.last_step = step
        self.history.append({"step": step, "epoch": epoch, **entry})
        if value is None:
            return False
        improved = math.isfinite(value) and (self.best is None or value < self.best)
        if improved:
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            self.stopped = True
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "bad": self.bad,
            "stopped": self.stopped,
            "last_step": self.last_step,
            "history": [dict(h) for h in self.history],
            "sums": dict(self._sums),
            "count": self._count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_step = state["best_step"]
        self.bad = int(state["bad"])
        self.stopped = bool(state["stopped"])
        self.last_step = state["last_step"]
        self.history = [dict(h) for h in state["history"]]
        self._sums = dict(state["sums"])
        self._count = int(state["count"])


def save_best(
    folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Replace ``folder`` atomically with ``model.safetensors`` + ``meta.json``."""
    from safetensors.torch import save

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}

    def write(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(save(cpu))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    atomic_folder(write, folder, force=True)


def load_best(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and description written by :func:`save_best`."""
    from safetensors.torch import load_file

    try:
        weights = load_file(str(Path(folder) / "model.safetensors"))
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read the best weights in {folder}: {exc}"
        ) from exc
    return weights, meta
