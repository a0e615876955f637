"""The token LM evaluated so that every machine computes the same bits.

An entropy coder fails if the encoder and the decoder disagree on a single probability,
and ordinary float inference does not promise that: BLAS libraries, thread counts and
SIMD paths sum in different orders, and ``exp`` differs between math libraries. This
module runs a :class:`~focalcodec.lm.model.TokenLM` in float64 numpy under three rules:

1. Every reduction (matrix product, sum) adds **integer-valued** float64 numbers whose
   partial sums stay below ``2 ** 53``. Each partial sum is then exactly representable,
   so the result is exact and the same in any order, with or without FMA, on any BLAS.
   Inputs of a reduction are therefore quantized first: weights per output row and
   activations per token to 15-bit integers with a float64 scale, attention weights to
   integers in ``[0, 2 ** 15)`` and values to a fixed 12-fractional-bit grid.
2. Everything else is an elementwise IEEE-754 basic operation (``+ - * /``, ``sqrt``,
   ``rint``, ``floor``, ``ldexp``, ``max``), each correctly rounded by the standard and so
   identical on every conforming machine, applied in a fixed order.
3. ``exp`` is replaced by :func:`exp2_poly`, a fixed polynomial in those operations;
   its argument is clamped so no subnormal number ever appears (flush-to-zero modes
   cannot change a result).

A consequence used by the coder: feeding a packet's tokens in one chunk (encoder) or
one by one (decoder) gives bit-identical probabilities, because every position's keys,
values and outputs are computed by the same row-wise operations and exact sums over
the same window of cached positions, however the tokens arrive.

The price is a small approximation of the float model (15-bit weights and activations):
its bits per token are reported next to the float model's in ``docs/entropy.md``.
"""

from __future__ import annotations

import copy

import numpy as np

from .model import NORM_EPS, LMConfig, alibi_slopes

__all__ = ["ExactLM", "exp2_poly"]

QMAX = 32767.0  # 15-bit magnitudes: products < 2**30, sums of < 2**23 of them exact
P_SCALE = 32767.0  # attention weights are integers in [0, P_SCALE]
V_SCALE = 4096.0  # values on a fixed grid of 1/4096 ...
V_CLIP = float(2**20)  # ... clipped to +-256, so P_SCALE * V_CLIP * window < 2**53
TINY = 2.0**-40  # rows below this magnitude are treated as zero (no subnormals)
EXP_FLOOR = -60.0  # exp2 arguments are clamped here: results stay normal numbers
LOG2E = 1.4426950408889634
# Taylor coefficients of 2**f = exp(f ln 2) on [0, 1): (ln 2)**k / k!, k = 0..8
# (relative error below 1e-7). Written out, not computed, so no libm is involved.
_EXP2 = (
    1.0,
    0.6931471805599453,
    0.2402265069591007,
    0.05550410866482158,
    0.009618129107628477,
    0.0013333558146428443,
    0.00015403530393381606,
    1.525273380405984e-05,
    1.3215486790144307e-06,
)


def exp2_poly(y: np.ndarray) -> np.ndarray:
    """``2 ** y`` for ``y <= 0`` from basic float64 operations only.

    Arguments below ``EXP_FLOOR`` are clamped to it; the result is a normal float64 in
    ``[2 ** EXP_FLOOR, 1]``.
    """
    y = np.maximum(y, EXP_FLOOR)
    n = np.floor(y)
    f = y - n  # exact: y and n are close
    acc = np.full_like(f, _EXP2[-1])
    for c in _EXP2[-2::-1]:
        acc = acc * f + c
    return np.ldexp(acc, n.astype(np.int64))


def _quant_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued ``q`` and scales ``s`` with ``x ~= q * s`` per last-axis row."""
    peak = np.max(np.abs(x), axis=-1)
    zero = peak < TINY
    scale = np.where(zero, 1.0, peak / QMAX)
    q = np.rint(x / scale[..., None])
    q[zero] = 0.0
    return q, scale


class _Linear:
    """``y = x W^T`` with 15-bit integer weights (per output row) and activations."""

    def __init__(self, weight: np.ndarray) -> None:
        self.q, self.scale = _quant_rows(weight.astype(np.float64))
        self.qt = np.ascontiguousarray(self.q.T)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xq, xs = _quant_rows(x)
        return ((xq @ self.qt) * xs[:, None]) * self.scale[None, :]


def _norm(x: np.ndarray) -> np.ndarray:
    """Parameter-free RMSNorm of rows, (N, D) -> (N, D)."""
    xq, xs = _quant_rows(x)
    ss = np.sum(xq * xq, axis=1)  # integers: exact in any order
    inv = 1.0 / np.sqrt((ss * (xs * xs)) / x.shape[1] + NORM_EPS)
    return (xq * xs[:, None]) * inv[:, None]


class _State:
    """Cached integer keys/values of the last ``context - 1`` tokens, per layer."""

    def __init__(self, num_layers: int) -> None:
        self.kq: list[np.ndarray | None] = [None] * num_layers  # (H, S, hd)
        self.ks: list[np.ndarray | None] = [None] * num_layers  # (H, S)
        self.vq: list[np.ndarray | None] = [None] * num_layers  # (H, S, hd)
        self.length = 0  # tokens fed so far


class ExactLM:
    """Machine-independent next-token probabilities of a token LM.

    Parameters
    ----------
    cfg
        The LM architecture.
    weights
        Its float32 weights by ``TokenLM.state_dict()`` name.
    """

    def __init__(self, cfg: LMConfig, weights: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self.heads = cfg.num_heads
        self.head_dim = cfg.dim // cfg.num_heads
        self.embed = weights["embed.weight"].astype(np.float64)
        self.layers = []
        for i in range(cfg.num_layers):
            p = f"blocks.{i}."
            self.layers.append(
                tuple(
                    _Linear(weights[p + name])
                    for name in ("attn.qkv.weight", "attn.proj.weight", "fc.weight")
                )
                + (_Linear(weights[p + "out.weight"]),)
            )
        self.head = _Linear(weights["head.weight"])
        self.slopes = np.array(alibi_slopes(cfg.num_heads), dtype=np.float64)
        self.inv_sqrt_hd = 1.0 / np.sqrt(np.float64(self.head_dim))
        self.state = _State(cfg.num_layers)

    def reset(self) -> None:
        """Forget every token fed so far."""
        self.state = _State(self.cfg.num_layers)

    def clone(self) -> ExactLM:
        """A model sharing these quantized weights, with an empty context."""
        twin = copy.copy(self)
        twin.reset()
        return twin

    def feed(self, toks: np.ndarray) -> np.ndarray:
        """Append tokens to the context and return what follows each.

        Parameters
        ----------
        toks
            Token ids, shape (T,), in ``[0, vocab_size)``.

        Returns
        -------
            Unnormalised probabilities, shape (T, codebook_size), float64 in
            ``[2 ** -60, 1]`` (the largest is 1): row t is the distribution of the token
            after ``toks[t]``, separator excluded.
        """
        toks = np.asarray(toks, dtype=np.int64)
        x = self.embed[toks]
        for i, (qkv, proj, fc, out) in enumerate(self.layers):
            x = x + proj(self._attend(i, qkv(_norm(x))))
            h = np.maximum(fc(_norm(x)), 0.0)
            x = x + out(h * h)
        self.state.length += len(toks)
        logits = self.head(_norm(x))[:, : self.cfg.codebook_size]
        peak = np.max(logits, axis=1, keepdims=True)
        return exp2_poly((logits - peak) * LOG2E)

    def _attend(self, layer: int, qkv: np.ndarray) -> np.ndarray:
        """Windowed ALiBi attention of new tokens over cached + new keys, (T, D)."""
        t, st = qkv.shape[0], self.state
        q, k, v = qkv.reshape(t, 3, self.heads, self.head_dim).transpose(1, 2, 0, 3)
        qq, qs = _quant_rows(q)
        kq, ks = _quant_rows(k)
        vq = np.clip(np.rint(v * V_SCALE), -V_CLIP, V_CLIP)
        if st.kq[layer] is not None:
            kq = np.concatenate([st.kq[layer], kq], axis=1)
            ks = np.concatenate([st.ks[layer], ks], axis=1)
            vq = np.concatenate([st.vq[layer], vq], axis=1)
        s = kq.shape[1]
        dist = (st.length + np.arange(t))[:, None] - (st.length + t - s + np.arange(s))
        allowed = (dist >= 0) & (dist < self.cfg.context)
        scores = qq @ kq.transpose(0, 2, 1)  # (H, T, S), exact integers
        scores = ((scores * qs[:, :, None]) * ks[:, None, :]) * self.inv_sqrt_hd
        scores = scores - self.slopes[:, None, None] * dist[None]
        scores = np.where(allowed[None], scores, -np.inf)
        peak = np.max(scores, axis=2, keepdims=True)
        e = exp2_poly(np.where(allowed[None], (scores - peak) * LOG2E, EXP_FLOOR))
        p = np.where(allowed[None], np.rint(e * P_SCALE), 0.0)
        mixed = (p @ vq) / (np.sum(p, axis=2, keepdims=True) * V_SCALE)
        keep = self.cfg.context - 1
        st.kq[layer], st.ks[layer], st.vq[layer] = (
            kq[:, -keep:],
            ks[:, -keep:],
            vq[:, -keep:],
        )
        return mixed.transpose(1, 0, 2).reshape(t, -1)

    @property
    def codebook_size(self) -> int:
        """Tokens the distributions cover (the separator is never coded)."""
        return self.cfg.codebook_size

    def start(self) -> np.ndarray:
        """Reset and feed the separator; the distribution (C,) of a stream's first token.

        Streams start like utterances in packed training blocks: after a separator.
        """
        self.reset()
        return self.feed(np.array([self.cfg.separator]))[0]
