"""WavLM self-attention with a gated relative position bias, full or chunk-causal.

Causal models attend in chunks of ``c = 1 + lookahead`` frames: a frame sees every frame of
its own chunk (up to ``c - 1`` future frames, the lookahead) and the past, ``window_size``
keys in total. For streaming, keys and values live in a cache of ``window_size`` rows that is
shifted left after each call so that the newest chunk always lands at the same rows::

    rows:  0 ............................ W-c-1 | W-c ... W-1
           the W-c most recent past frames      | this call's c frames
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GatedRelativeAttention", "RelativePositionBias", "chunk_window_mask"]


class RelativePositionBias(nn.Embedding):
    """Per-head bias from log-spaced relative-position buckets (T5/WavLM style).

    An ``nn.Embedding`` of shape (num_buckets, num_heads), so that checkpoints keep the
    ``relative_embedding.weight`` key. The bucket arithmetic runs in float32 in a fixed
    order, because a one-off bucket index changes the outputs of released checkpoints.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int) -> None:
        super().__init__(num_buckets, num_heads)
        self.max_distance = max_distance

    def buckets(self, relative: Tensor) -> Tensor:
        """Bucket index for each relative position ``key - query`` (int64 tensor)."""
        half = self.num_embeddings // 2
        exact = half // 2
        log_ratio = math.log(self.max_distance / exact)
        offset = (relative > 0).long() * half
        distance = relative.abs()
        scaled = torch.log(distance.clamp(min=1).float() / exact)
        scaled = scaled / log_ratio * (half - exact) + exact
        far = scaled.long().clamp(max=half - 1)
        return offset + torch.where(distance < exact, distance, far)

    def forward(self, query_start: int, num_queries: int, num_keys: int) -> Tensor:
        """Bias for queries at positions ``query_start + t`` and keys at ``0..num_keys-1``.

        Returns
        -------
        Tensor of shape (H, num_queries, num_keys).
        """
        device = self.weight.device
        queries = torch.arange(query_start, query_start + num_queries, device=device)
        keys = torch.arange(num_keys, device=device)
        relative = keys[None, :] - queries[:, None]
        return F.embedding(self.buckets(relative), self.weight).permute(2, 0, 1)


def chunk_window_mask(
    start: int, num_queries: int, num_keys: int, chunk: int, window: int, dtype, device
) -> Tensor:
    """Additive mask (num_queries, num_keys) for chunked sliding-window attention.

    Query ``t`` sits at cache position ``start + t``; it may see keys in
    ``[end - window, end)`` where ``end`` is the end of its chunk (chunks are aligned to
    multiples of ``chunk`` in cache coordinates), clipped to the keys that exist.
    """
    pos = torch.arange(start, start + num_queries, device=device)
    if chunk > 1:
        end = torch.div(pos + chunk, chunk, rounding_mode="floor") * chunk
    else:
        end = pos + 1
    end = end.clamp(max=num_keys)
    begin = (end - window).clamp(min=0)
    keys = torch.arange(num_keys, device=device)[None, :]
    allowed = (keys >= begin[:, None]) & (keys < end[:, None])
    mask = torch.zeros(num_queries, num_keys, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, float("-inf"))


class GatedRelativeAttention(nn.Module):
    """Multi-head attention whose relative position bias is scaled by a learned gate.

    The gate comes from each query frame: ``a * (b * c_h - 1) + 2`` with ``a, b`` two
    sigmoids of a small projection of that head's input and ``c_h`` a learned constant.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        # Parameter order is the checkpoint's key order.
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        self.dropout = dropout

    def gate(self, x: Tensor) -> Tensor:
        """Gate (B, H, T, 1) from the normalised layer input (B, T, dim)."""
        batch, frames, _ = x.shape
        heads = x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)
        g = self.gru_rel_pos_linear(heads).view(batch, self.num_heads, frames, 2, 4)
        g = torch.sigmoid(g.sum(-1))
        a, b = g[..., 0:1], g[..., 1:2]
        return a * (b * self.gru_rel_pos_const.to(x.dtype) - 1.0) + 2.0

    def forward(
        self,
        x: Tensor,
        position_bias: Tensor,
        mask: Tensor | None = None,
        cache: Tensor | None = None,
        cache_start: int = 0,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend over ``x`` (B, T, dim), optionally after the cached past.

        Parameters
        ----------
        x
            Normalised layer input, shape (B, T, dim).
        position_bias
            Ungated bias, shape (H, T, K) with K the number of keys.
        mask
            Additive mask broadcastable to (B, H, T, K), or None.
        cache
            Key/value cache (B, rows, H, d, 2) to write this call's keys into at rows
            ``cache_start ..`` (streaming), or None to attend over ``x`` only.

        Returns
        -------
        The output (B, T, dim) and the updated cache (None when no cache was given).
        """
        batch, frames, dim = x.shape
        qkv = self.qkv_proj(x).view(batch, frames, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)
        if cache is not None:
            end = cache_start + frames
            if cache.shape[1] < end:
                cache = F.pad(cache, (0, 0, 0, 0, 0, 0, 0, end - cache.shape[1]))
            cache = cache.clone()
            cache[:, cache_start:end] = torch.stack([k, v], dim=-1)
            k, v = cache[:, :end].unbind(-1)
        bias = self.gate(x) * position_bias
        if mask is not None:
            bias = bias + mask
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=bias.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).reshape(batch, frames, dim)
        return self.out_proj(y), cache
