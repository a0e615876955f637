"""Bits per token of a token LM on token data (``focalcodec lm eval``).

Every item is scored as the entropy coder sees it: a stream that starts after a
separator, each token predicted from up to ``context - 1`` tokens before it. The result
is weighted by tokens (total bits over total tokens). With ``exact=True`` the same is
measured with :class:`~focalcodec.lm.exact.ExactLM`, i.e. the ideal size of the
LM-coded payload before the range coder's few bytes of overhead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .exact import ExactLM
from .model import KVCache, TokenLM

__all__ = ["evaluate_tokens", "exact_bits", "stream_bits"]


@torch.inference_mode()
def stream_bits(lm: TokenLM, toks: np.ndarray) -> float:
    """Total bits (-log2 likelihood) of tokens (L,) under the float model."""
    device = next(lm.parameters()).device
    stream = np.concatenate([[lm.cfg.separator], np.asarray(toks, dtype=np.int64)])
    cache: KVCache | None = None
    total = 0.0
    step = lm.cfg.context
    for start in range(0, len(stream) - 1, step):
        chunk = torch.from_numpy(stream[start : start + step]).to(device)
        targets = torch.from_numpy(stream[start + 1 : start + step + 1]).to(device)
        logits, cache = lm(chunk[None], cache)
        logits = logits[0, : len(targets)].double()
        # The separator is never coded: score over the codebook only, as the coder does.
        logits = logits[:, : lm.cfg.codebook_size]
        total += float(F.cross_entropy(logits, targets, reduction="sum"))
    return total / math.log(2.0)


def exact_bits(exact: ExactLM, toks: np.ndarray, chunk: int = 256) -> float:
    """Total bits of tokens (L,) under the exact model's (normalised) distributions."""
    toks = np.asarray(toks, dtype=np.int64)
    prev = exact.start()
    total = 0.0
    for start in range(0, len(toks), chunk):
        part = toks[start : start + chunk]
        after = exact.feed(part)
        probs = np.concatenate([prev[None], after[:-1]])
        picked = probs[np.arange(len(part)), part] / probs.sum(axis=1)
        total -= float(np.sum(np.log2(picked)))
        prev = after[-1]
    return total


def evaluate_tokens(
    lm: TokenLM, streams: Iterable[np.ndarray], exact: bool = False
) -> dict[str, float]:
    """Token-weighted bits per token (and per second) over token streams.

    Parameters
    ----------
    lm
        The token LM (eval mode); ``lm.cfg.token_rate`` gives bits per second.
    streams
        Token arrays, one per item.
    exact
        Also measure the exact model (slower; numpy on the CPU).

    Returns
    -------
        ``items``, ``tokens``, ``bits_per_token``, ``bits_per_second``,
        ``nominal_bits_per_token`` and, with ``exact``, ``exact_bits_per_token``.
    """
    engine = None
    if exact:
        weights = {
            k: v.detach().cpu().float().numpy() for k, v in lm.state_dict().items()
        }
        engine = ExactLM(lm.cfg, weights)
    items = tokens = 0
    bits = exact_total = 0.0
    for toks in streams:
        if not len(toks):
            continue
        items += 1
        tokens += len(toks)
        bits += stream_bits(lm, toks)
        if engine is not None:
            exact_total += exact_bits(engine, toks)
    per_token = bits / max(tokens, 1)
    out = {
        "items": items,
        "tokens": tokens,
        "bits_per_token": per_token,
        "bits_per_second": per_token * lm.cfg.token_rate,
        "nominal_bits_per_token": math.log2(lm.cfg.codebook_size),
    }
    if engine is not None:
        out["exact_bits_per_token"] = exact_total / max(tokens, 1)
    return out
