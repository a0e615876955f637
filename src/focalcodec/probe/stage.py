"""The probe as a training stage of the shared loop (:mod:`focalcodec.train.trainer`).

The trainer brings devices, precision, ``torchrun`` distribution, resumable
checkpoints, validation every epoch, the plateau learning-rate rule, early stopping and
the best weights; this stage brings the network, its loss and its validation metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..train.config import TrainConfig
from ..train.stage import DataSpec, Stage
from .nets import ProbeNet
from .units import BLANK, ctc_greedy

__all__ = ["TIE", "ProbeStage", "predict"]

# Weight of the validation loss in ``error_then_loss`` (error rate + TIE * loss / (1 +
# loss)): below one error in 10 million items, so epochs are ranked by their error
# rate first and only equal error rates by the loss. On a small validation set the
# error rate reaches its floor early; the first epoch there is rarely the best trained.
TIE = 1e-7


class ProbeStage(Stage):
    """Classification (cross-entropy) or ASR (CTC) probe.

    Parameters
    ----------
    cfg
        Trainer config built by :func:`focalcodec.probe.config.train_config`.
    device
        Where the probe runs.
    net
        The probe network (already built; moved to ``device`` here).
    task
        ``classify`` or ``asr``.
    describe
        JSON facts stored with every checkpoint (task, classes or units, input).
    """

    name = "probe"

    def __init__(
        self,
        cfg: TrainConfig,
        device: torch.device,
        net: ProbeNet,
        task: str,
        describe: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cfg, device)
        self.task = task
        self.nets = {"probe": net.to(device)}
        self._describe = dict(describe or {})

    def data_spec(self) -> DataSpec:
        # Probes read cached tokens or features, never audio.
        return DataSpec(input_rate=0, hop=1, needs_audio=False)

    def optim_groups(self):
        return {"probe": (list(self.nets["probe"].parameters()), self.cfg.optim)}

    def _loss(self, net: nn.Module, batch: dict[str, torch.Tensor]):
        out = net(batch["x"], batch["length"])
        if self.task == "classify":
            return F.cross_entropy(out.float(), batch["label"]), out
        log_probs = out.float().log_softmax(-1).transpose(0, 1)  # (T, B, V) for CTC
        loss = F.ctc_loss(
            log_probs,
            batch["target"],
            batch["length"],
            batch["target_len"],
            blank=BLANK,
            zero_infinity=True,
        )
        return loss, out

    def train_step(self, batch, ctx):
        with ctx.autocast():
            loss, _ = self._loss(self.runners["probe"], batch)
        return {"loss": float(loss.detach()), **ctx.optimize("probe", loss)}

    def valid_step(self, batch):
        loss, out = self._loss(self.nets["probe"], batch)
        if self.task == "classify":
            wrong = (out.argmax(-1) != batch["label"]).sum().item()
            return _metrics(float(loss), wrong / len(batch["label"]))
        hyps = ctc_greedy(out, batch["length"])
        errors = total = 0
        for hyp, ref, n in zip(hyps, batch["target"], batch["target_len"], strict=True):
            errors += _edit_distance(hyp, ref[: int(n)].tolist())
            total += int(n)
        return _metrics(float(loss), errors / max(total, 1))

    def export(self, folder: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.nets["probe"].state_dict().items()}
        save_file(state, str(folder / "probe.safetensors"))

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)


def _metrics(loss: float, error_rate: float) -> dict[str, float]:
    """Validation metrics of one batch; ``error_then_loss`` ranks epochs by their error
    rate, then by their loss (see :data:`TIE`)."""
    tie = TIE * loss / (1.0 + loss) if loss >= 0 else 0.0
    return {"loss": loss, "error_rate": error_rate, "error_then_loss": error_rate + tie}


def _edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two unit sequences (validation unit error rate)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


@torch.no_grad()
def predict(
    net: ProbeNet, loader, device: torch.device, task: str
) -> list[int | list[int]]:
    """Predictions for every item of ``loader``: class indices, or unit id lists."""
    net.eval()
    out: list[int | list[int]] = []
    for batch in loader:
        x, lengths = batch["x"].to(device), batch["length"].to(device)
        logits = net(x, lengths).float()
        if task == "classify":
            out += logits.argmax(-1).tolist()
        else:
            out += ctc_greedy(logits, lengths)
    return out
