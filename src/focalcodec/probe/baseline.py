"""The bag-of-tokens baseline that every classification probe is compared with.

A probe trained on token sequences should learn at least what the mere counts of the
tokens tell: each item becomes its token histogram (relative frequencies, L2-normalised,
a sparse vector of ``codebook_size`` entries), and a linear softmax classifier is trained
on the probe's own training split, its epoch picked on the validation split, and scored
on the test split. A probe below this baseline has learnt less than a linear model on
counts, and its number says more about its training than about the codec.

The classifier is trained full batch with Adam (deterministic for a seed), so the
baseline costs seconds, not a second probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["bag_of_tokens", "token_histograms"]

# Full-batch steps, learning rate and L2 weight of the linear classifier.
STEPS, LR, L2 = 300, 0.05, 1e-4


def token_histograms(toks: Sequence[torch.Tensor], codebook_size: int) -> torch.Tensor:
    """Sparse (N, codebook_size) matrix: row i is item i's L2-normalised histogram.

    Parameters
    ----------
    toks
        Token ids of each item, shape (L_i,), int64.
    codebook_size
        Number of token ids.
    """
    rows, cols, vals = [], [], []
    for i, t in enumerate(toks):
        ids, counts = torch.unique(t.to(torch.int64), return_counts=True)
        weights = counts.to(torch.float32)
        weights = weights / weights.norm().clamp(min=1e-12)
        rows.append(torch.full_like(ids, i))
        cols.append(ids)
        vals.append(weights)
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    size = (len(toks), codebook_size)
    values = torch.cat(vals)
    return torch.sparse_coo_tensor(
        index, values, size, check_invariants=True
    ).coalesce()


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def bag_of_tokens(
    splits: dict[str, tuple[Sequence[torch.Tensor], Sequence[int]]],
    codebook_size: int,
    num_classes: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and score the baseline on the probe's splits.

    Parameters
    ----------
    splits
        ``train``, ``valid`` and ``test``: (token ids of each item, class indices).
    codebook_size
        Number of token ids.
    num_classes
        Number of classes.
    seed
        Seed of the classifier's initialisation.

    Returns
    -------
        ``test_accuracy``, ``test_error_rate``, ``valid_accuracy`` and ``best_step``
        (the step whose validation accuracy was best, then lowest validation loss).
    """
    data = {
        name: (token_histograms(t, codebook_size), torch.tensor(list(y)))
        for name, (t, y) in splits.items()
    }
    gen = torch.Generator().manual_seed(seed)
    weight = (
        0.01 * torch.randn(codebook_size, num_classes, generator=gen)
    ).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    optim = torch.optim.Adam([weight, bias], lr=LR)

    def logits(name: str) -> torch.Tensor:
        return torch.sparse.mm(data[name][0], weight) + bias

    best: tuple[float, float, int] | None = None
    best_test = 0.0
    for step in range(1, STEPS + 1):
        optim.zero_grad()
        loss = F.cross_entropy(logits("train"), data["train"][1])
        (loss + L2 * weight.pow(2).sum()).backward()
        optim.step()
        with torch.no_grad():
            out = logits("valid")
            score = (
                _accuracy(out, data["valid"][1]),
                -float(F.cross_entropy(out, data["valid"][1])),
                -step,
            )
            if best is None or score > best:
                best, best_test = score, _accuracy(logits("test"), data["test"][1])
    assert best is not None
    return {
        "test_accuracy": best_test,
        "test_error_rate": 1.0 - best_test,
        "valid_accuracy": best[0],
        "best_step": -best[2],
    }
