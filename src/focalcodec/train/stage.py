"""The contract between the shared training loop and one recipe ("stage").

A stage owns its modules and losses; the :class:`~focalcodec.train.trainer.Trainer`
owns devices, precision, distribution, data loading, checkpoints and logging. The loop
calls, in this order: :meth:`Stage.optim_groups` (once), :meth:`Stage.wrap` (once,
DistributedDataParallel or identity), then :meth:`Stage.train_step` per batch and
:meth:`Stage.valid_step` / :meth:`Stage.samples` during validation, and finally
:meth:`Stage.export`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from .config import OptimConfig, TrainConfig

__all__ = ["DataSpec", "Sample", "Stage", "StepContext"]


@dataclass(frozen=True)
class DataSpec:
    """What a stage needs from the data pipeline.

    Attributes
    ----------
    input_rate
        Rate of ``sig`` in a batch.
    hop
        Samples per encoder frame at ``input_rate``; crops start on multiples of it.
    target_rate
        Rate of ``target`` in a batch, or None when no second waveform is needed.
    cache_key
        Fingerprint of the frozen encoder whose features may be cached, or None when
        the stage cannot use cached features.
    needs_audio
        False when training batches only need cached features (audio is then not
        decoded during training; validation always has it).
    """

    input_rate: int
    hop: int
    target_rate: int | None = None
    cache_key: str | None = None
    needs_audio: bool = True


@dataclass
class Sample:
    """One validation example: a reference waveform and what the model made of it."""

    name: str
    reference: torch.Tensor
    reference_rate: int
    output: torch.Tensor
    output_rate: int


class StepContext(Protocol):
    """What :meth:`Stage.train_step` may use from the loop."""

    step: int

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes."""

    def optimize(self, name: str, loss: torch.Tensor) -> dict[str, float]:
        """Backward ``loss`` and step optimizer ``name``; returns e.g. its grad norm."""


class Stage(ABC):
    """One training recipe.

    Subclasses fill ``self.nets`` with the modules being trained (their names prefix
    the checkpoint keys) and implement the abstract methods. ``self.runners`` holds the
    same modules, wrapped by the loop for distributed training; use them for training
    forward passes and ``self.nets`` everywhere else.
    """

    name: ClassVar[str] = ""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.nets: dict[str, nn.Module] = {}
        self.runners: dict[str, nn.Module] = {}

    @abstractmethod
    def data_spec(self) -> DataSpec:
        """What the batches must contain."""

    def encode_file(self, path: Path) -> torch.Tensor:
        """Frozen-encoder features (F, D) of a whole file, for the feature cache."""
        raise NotImplementedError(f"stage '{self.name}' does not cache features")

    @abstractmethod
    def optim_groups(self) -> dict[str, tuple[list[nn.Parameter], OptimConfig]]:
        """Optimizer name -> (parameters, settings)."""

    def wrap(self, fn: Callable[[nn.Module], nn.Module]) -> None:
        """Set ``self.runners`` to ``fn`` applied to every trained module."""
        self.runners = {name: fn(net) for name, net in self.nets.items()}

    def train(self, mode: bool = True) -> None:
        """Put the trained modules in training (or eval) mode; frozen ones stay eval."""
        for net in self.nets.values():
            net.train(mode)

    @abstractmethod
    def train_step(
        self, batch: dict[str, torch.Tensor], ctx: StepContext
    ) -> dict[str, float]:
        """One optimisation step on a batch; returns scalar metrics to log."""

    @abstractmethod
    def valid_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of one validation batch (called under ``torch.no_grad``)."""

    def samples(self, batch: dict[str, torch.Tensor], index: int) -> list[Sample]:
        """Audio examples of one validation batch (none by default)."""
        return []

    @abstractmethod
    def export(self, folder: Path) -> None:
        """Write the trained codec in the ``from_pretrained`` layout into ``folder``."""

    def describe(self) -> dict[str, Any]:
        """Extra JSON description stored in every checkpoint's ``meta.json``."""
        return {}
