"""The LM as a training stage of the package's trainer.

:class:`LMStage` plugs a :class:`~focalcodec.lm.model.TokenLM` into
:class:`focalcodec.train.trainer.Trainer`, which brings resume, ``torchrun``/DDP,
bf16/fp16 autocast, checkpoints and metric logging. Batches are packed blocks
(:mod:`focalcodec.lm.data`); the loss is the mean cross-entropy of the next token.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..train.config import OptimConfig
from ..train.stage import DataSpec, Stage, StepContext
from .data import PAD
from .files import save_lm
from .model import LMConfig, TokenLM

__all__ = ["LMStage", "block_nll"]

LN2 = math.log(2.0)


def block_nll(net: nn.Module, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy (nats) of packed blocks, and the target count.

    Parameters
    ----------
    net
        A :class:`TokenLM`, or a wrapper (DDP) whose forward is the LM's.
    block
        Token ids, shape (B, T + 1); ``PAD`` marks padding, never predicted.
    """
    inputs, targets = block[:, :-1].clamp(min=0), block[:, 1:]
    logits, _ = net(inputs)
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=PAD,
        reduction="sum",
    )
    return nll, (targets != PAD).sum()


class LMStage(Stage):
    """Next-token training of a token LM.

    Parameters
    ----------
    cfg
        The LM training config (:class:`focalcodec.lm.train.LMTrainConfig`).
    device
        Where to train.
    lm_cfg
        The LM architecture, with the token folder's codebook, rate and codec hash.
    """

    name = "lm"

    def __init__(self, cfg: Any, device: torch.device, lm_cfg: LMConfig) -> None:
        super().__init__(cfg, device)
        self.lm_cfg = lm_cfg
        self.nets = {"lm": TokenLM(lm_cfg).to(device)}

    def data_spec(self) -> DataSpec:
        # Token batches carry no audio; the rate fields describe the token stream.
        rate = max(1, round(self.lm_cfg.token_rate))
        return DataSpec(input_rate=rate, hop=1, needs_audio=False)

    def optim_groups(self) -> dict[str, tuple[list[nn.Parameter], OptimConfig]]:
        return {"lm": (list(self.nets["lm"].parameters()), self.cfg.optim)}

    def train_step(
        self, batch: dict[str, torch.Tensor], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            nll, count = block_nll(self.runners["lm"], batch["block"])
        loss = nll / count.clamp(min=1)
        metrics = ctx.optimize("lm", loss)
        value = float(loss.detach())
        return {"loss": value, "bits_per_token": value / LN2, **metrics}

    def valid_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        nll, count = block_nll(self.nets["lm"], batch["block"])
        loss = float(nll) / max(int(count), 1)
        bits = loss / LN2
        return {
            "loss": loss,
            "bits_per_token": bits,
            "bits_per_second": bits * self.lm_cfg.token_rate,
        }

    def export(self, folder: Path) -> None:
        save_lm(folder, self.lm_cfg, self.nets["lm"].state_dict())

    def describe(self) -> dict[str, Any]:
        return {"lm_config": self.lm_cfg.to_dict()}
