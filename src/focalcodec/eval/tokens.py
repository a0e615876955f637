"""Codebook statistics over a whole data set: code usage, normalised entropy, bitrate.

A codec with 2^C codes that only ever emits a few of them wastes bits. Code usage is the
fraction of the codebook seen at least once; normalised entropy is the Shannon entropy of
the empirical code distribution divided by its maximum, log(K), so 1.0 means every code is
equally frequent and 0.0 means a single code. Entropy times the token rate is the bitrate
an ideal entropy coder would reach on these tokens (always <= the nominal bitrate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .base import EvalError

__all__ = ["TokenStats", "code_usage", "normalized_entropy"]


class TokenStats:
    """Accumulates a histogram of token ids over many utterances.

    Parameters
    ----------
    codebook_size
        Number of codes K; token ids must lie in [0, K).
    """

    def __init__(self, codebook_size: int) -> None:
        if codebook_size < 1:
            raise EvalError(f"codebook_size must be >= 1, got {codebook_size}")
        self.codebook_size = int(codebook_size)
        self.counts = np.zeros(self.codebook_size, dtype=np.int64)

    def append(self, toks: Iterable[int] | np.ndarray) -> None:
        """Count the tokens of one utterance (or batch).

        Parameters
        ----------
        toks
            Token ids of any shape, e.g. (B, L) or (L,); a torch tensor works too.
        """
        arr = np.asarray(toks).reshape(-1)
        if arr.size == 0:
            return
        if not np.issubdtype(arr.dtype, np.integer):
            raise EvalError(f"token ids must be integers, got {arr.dtype}")
        if arr.min() < 0 or arr.max() >= self.codebook_size:
            raise EvalError(
                f"token ids must lie in [0, {self.codebook_size}), "
                f"got [{arr.min()}, {arr.max()}]"
            )
        self.counts += np.bincount(arr, minlength=self.codebook_size)

    @property
    def total(self) -> int:
        """Number of tokens counted so far."""
        return int(self.counts.sum())

    def summarize(self) -> dict[str, float]:
        """Return code usage, normalised entropy and entropy in bits per token."""
        return {
            "code_usage": code_usage(self.counts),
            "norm_entropy": normalized_entropy(self.counts),
            "entropy_bits": _entropy_bits(self.counts),
        }


def code_usage(counts: np.ndarray) -> float:
    """Fraction of codes used at least once.

    Parameters
    ----------
    counts
        Histogram over the codebook, shape (K,).

    Returns
    -------
        Used codes / K in [0, 1]; NaN when no token was counted.
    """
    counts = np.asarray(counts)
    if counts.sum() == 0:
        return math.nan
    return float(np.count_nonzero(counts) / counts.size)


def normalized_entropy(counts: np.ndarray) -> float:
    """Entropy of the empirical code distribution divided by log(K).

    Parameters
    ----------
    counts
        Histogram over the codebook, shape (K,).

    Returns
    -------
        Value in [0, 1]; NaN when no token was counted; 0 for K = 1.
    """
    counts = np.asarray(counts)
    if counts.sum() == 0:
        return math.nan
    if counts.size == 1:
        return 0.0
    return _entropy_bits(counts) / math.log2(counts.size)


def _entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return math.nan
    probs = counts[counts > 0] / total
    # max(0, .) removes the -0.0 that a single used code would give.
    return max(0.0, float(-(probs * np.log2(probs)).sum()))
