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
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Linear

__all__ = [
    "BiasRows",
    "GatedRelativeAttention",
    "RelativePositionBias",
    "RowBias",
    "SharedCache",
    "chunk_window_mask",
    "padded_chunk_window_mask",
]


class RelativePositionBias(nn.Embedding):
    """Per-head bias from log-spaced relative-position buckets (T5/WavLM style).

    An ``nn.Embedding`` of shape (num_buckets, num_heads), so that checkpoints keep the
    ``relative_embedding.weight`` key. The bucket arithmetic runs in float32 in a fixed
    order, because a one-off bucket index changes the outputs of released checkpoints.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int) -> None:
        super().__init__(num_buckets, num_heads)
        self.max_distance = max_distance
        # For subclasses that override a hook: built alike (deploy.swap.rebuild).
        self.init_kwargs = {
            "num_buckets": num_buckets,
            "max_distance": max_distance,
            "num_heads": num_heads,
        }

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
        Tensor of shape (H, num_queries, num_keys), contiguous.
        """
        return self.rows(query_start, num_queries, num_keys).block(0, num_queries)

    def rows(self, query_start: int, num_queries: int, num_keys: int) -> BiasRows:
        """The same bias as :meth:`forward`, built row block by row block on demand.

        The bias only depends on ``key - query``, so buckets and embeddings are computed
        once per distance (``num_queries + num_keys - 1`` values) instead of once per
        (query, key) pair; the values are bitwise those of the direct computation.
        """
        device = self.weight.device
        lowest = -(query_start + num_queries - 1)
        relative = torch.arange(lowest, num_keys - query_start, device=device)
        table = F.embedding(self.buckets(relative), self.weight).T.contiguous()
        return BiasRows(table, num_queries - 1, num_keys)

    def layer_bias(
        self, query_start: int, num_queries: int, num_keys: int
    ) -> Tensor | BiasRows:
        """The bias that every layer of one encoder call shares.

        The whole (H, num_queries, num_keys) tensor, computed once for all layers; or,
        beyond :data:`BLOCK_BYTES` (10 s of 50 Hz frames at once), its
        :class:`BiasRows`, from which each layer builds it block by block instead of
        keeping it all.
        """
        rows = self.rows(query_start, num_queries, num_keys)
        if self.embedding_dim * num_queries * num_keys * 4 > BLOCK_BYTES:
            return rows
        return rows.block(0, num_queries)


class BiasRows:
    """Rows of a Toeplitz bias, built on demand by :meth:`block`.

    Parameters
    ----------
    table
        Bias per distance, shape (H, num_queries + num_keys - 1); column
        ``offset + j - i`` holds the bias of key ``j`` for the ``i``-th query.
    offset
        ``num_queries - 1``: the column of key 0 for the last query.
    num_keys
        K, the number of keys.
    """

    def __init__(self, table: Tensor, offset: int, num_keys: int) -> None:
        self.table = table
        self.offset = offset
        self.num_keys = num_keys

    def block(self, start: int, stop: int) -> Tensor:
        """Bias of queries ``start..stop-1``, shape (H, stop - start, K), a new tensor."""
        # Query i's row is the table slice from column offset - i on, so the rows are
        # the windows of the table, in reverse order: a flipped copy of a strided view
        # (the same values as gathering them column by column, several times faster).
        # Copy first, then flip: flipping the overlapping view itself gives a tensor
        # strided along the queries, slower to write and copied again by attention.
        if torch.jit.is_tracing():
            # ONNX export cannot size an unfold of a traced length: gather the columns.
            device = self.table.device
            queries = torch.arange(start, stop, device=device)
            keys = torch.arange(self.num_keys, device=device)
            return self.table[:, keys[None, :] - queries[:, None] + self.offset]
        windows = self.table.unfold(1, self.num_keys, 1)
        first, last = self.offset - stop + 1, self.offset - start + 1
        return windows[:, first:last].contiguous().flip(1)


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


def padded_chunk_window_mask(
    lengths: Tensor, frames: int, chunk: int, window: int, dtype
) -> Tensor:
    """:func:`chunk_window_mask` for each item of a right-padded batch, (B, 1, T, T).

    Item ``b`` alone has ``lengths[b]`` keys, and the window of its last (partial)
    chunk ends there; so here, too, every window ends at most at the item's length.
    Padded keys are thereby masked, and every row keeps at least one key.
    """
    pos = torch.arange(frames, device=lengths.device)
    if chunk > 1:
        end = torch.div(pos + chunk, chunk, rounding_mode="floor") * chunk
    else:
        end = pos + 1
    end = torch.minimum(end[None, :], lengths[:, None])
    begin = (end - window).clamp(min=0)
    keys = pos[None, None, :]
    allowed = (keys >= begin[..., None]) & (keys < end[..., None])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=lengths.device)
    return mask.masked_fill(~allowed, float("-inf"))[:, None]


class GatedRelativeAttention(nn.Module):
    """Multi-head attention whose relative position bias is scaled by a learned gate.

    The gate comes from each query frame: ``a * (b * c_h - 1) + 2`` with ``a, b`` two
    sigmoids of a small projection of that head's input and ``c_h`` a learned constant.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        # For subclasses that override a hook: built alike (deploy.swap.rebuild).
        self.init_kwargs = {"dim": dim, "num_heads": num_heads, "dropout": dropout}
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        # Parameter order is the checkpoint's key order.
        self.qkv_proj = Linear(dim, 3 * dim)
        self.out_proj = Linear(dim, dim)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gru_rel_pos_linear = Linear(self.head_dim, 8)
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
        position_bias: Tensor | BiasRows,
        mask: Tensor | None = None,
        cache: Tensor | None = None,
        cache_start: int = 0,
        cache_shift: int = 0,
        cache_rows: int | None = None,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend over ``x`` (B, T, dim), optionally after the cached past.

        Parameters
        ----------
        x
            Normalised layer input, shape (B, T, dim).
        position_bias
            Ungated bias, shape (H, T, K) with K the number of keys, or its
            :class:`BiasRows` (long inputs: rows are then built block by block), or
            with a :class:`SharedCache` a :class:`RowBias`.
        mask
            Additive mask of shape (T, K) or broadcastable to (B, H, T, K), or None.
        cache
            Key/value cache (B, rows, H, d, 2) to write this call's keys into at rows
            ``cache_start ..`` (streaming), or None to attend over ``x`` only, or a
            :class:`SharedCache` (many streams; the other cache arguments are unused).
        cache_shift, cache_rows
            After attending, the returned cache is rolled left by ``cache_shift`` rows
            and cut to ``cache_rows`` rows (the window), as the streaming layout needs.
        key_mask
            Additive mask per key, shape (B, K): 0 for real frames, -inf for the padding
            of a right-padded batch; None when every key is real.

        Returns
        -------
        The output (B, T, dim) and the updated cache (None when no cache was given).
        """
        qkv = self.qkv_proj(x)
        if cache is not None and not isinstance(cache, Tensor):
            # Many streams, each over its own past at its own position (a SharedCache).
            return self.out_proj(cache.attend(self, x, qkv, position_bias)), cache
        q, k, v, cache = self.heads(qkv, cache, cache_start, cache_shift, cache_rows)
        y = self.attend(x, q, k, v, position_bias, mask, key_mask)
        return self.out_proj(y), cache

    def heads(
        self,
        qkv: Tensor,
        cache: Tensor | None,
        cache_start: int,
        cache_shift: int,
        cache_rows: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Queries (B, H, T, d), keys and values (B, H, K, d) from the fused (B, T,
        3 dim) projection, after the cached past if any, and the updated cache."""
        batch, frames, _ = qkv.shape
        qkv = qkv.view(batch, frames, 3 * self.num_heads, self.head_dim)
        q, k, v = qkv.split(self.num_heads, dim=2)
        if cache is not None:
            k, v, cache = _update_cache(
                cache, k, v, cache_start, cache_shift, cache_rows
            )
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), cache

    def cache_with(self, keys: Tensor, values: Tensor, rows: int) -> Tensor:
        """A streaming cache in this module's layout holding past keys and values.

        ``keys`` and ``values`` (B, H, P, d), oldest first; ``rows`` is the cache's
        size (the window). Returns (B, max(rows, P), H, d, 2), the P past rows first,
        as :meth:`forward` leaves a cache after a call with P frames of past.
        """
        batch, heads, past, dim = keys.shape
        cache = keys.new_zeros((batch, max(rows, past), heads, dim, 2))
        cache[:, :past] = torch.stack([keys, values], dim=-1).transpose(1, 2)
        return cache

    def new_cache(self, x: Tensor) -> Tensor:
        """An empty key/value cache for a stream starting with ``x`` (B, T, dim).

        (B, max(512, T), H, d, 2) zeros: oversized as in the original, and cut to the
        window after the first call.
        """
        rows = max(512, x.shape[1])
        planes = x.new_zeros((2, x.shape[0], self.num_heads, rows, self.head_dim))
        return planes.permute(1, 3, 2, 4, 0)  # stored as planes: see _update_cache

    def attend(
        self,
        x: Tensor,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        position_bias: Tensor | BiasRows,
        mask: Tensor | None,
        key_mask: Tensor | None = None,
        gate: Tensor | None = None,
    ) -> Tensor:
        """Gated-bias attention of queries (B, H, T, d) over keys/values (B, H, K, d).

        ``x`` (B, T, dim) is the normalised layer input (for the gate, unless ``gate``
        (B, H, T, 1) is given, already computed from it); ``key_mask`` (B, K) is added
        to every query's row. Returns the heads merged, (B, T, dim), before the output
        projection.
        """
        batch, frames, dim = x.shape
        gate = self.gate(x) if gate is None else gate
        dropout = self.dropout if self.training else 0.0
        # Long inputs attend in blocks of queries: the gated (B, H, rows, K) bias is the
        # largest tensor of the encoder (576 MB per layer for 60 s at once).
        step = _query_block(batch * self.num_heads * k.shape[2], frames)
        pieces = []
        for start in range(0, frames, step):
            stop = min(start + step, frames)
            rows = _rows(position_bias, start, stop)
            if isinstance(position_bias, BiasRows) and batch == 1:
                # A fresh block of rows: gated in place (the same products).
                bias = rows.unsqueeze(0).mul_(gate[:, :, start:stop])
            else:
                bias = gate[:, :, start:stop] * rows
            if mask is not None:
                bias += _rows(mask, start, stop) if mask.shape[-2] == frames else mask
            if key_mask is not None:
                bias += key_mask[:, None, None, :]
            piece = F.scaled_dot_product_attention(
                q[:, :, start:stop], k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout
            )
            pieces.append(piece)
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
        return y.transpose(1, 2).reshape(batch, frames, dim)


class RowBias(NamedTuple):
    """The position bias of one call over many streams, each row at its own position.

    Attributes
    ----------
    starts
        Per row, the cache position of its first query (its number of past keys).
    bias
        Per start, the ungated bias (H, T, start + T).
    mask
        Per start, the additive mask (T, start + T) of a call over several chunks, or
        None (one chunk: every key is seen).
    """

    starts: list[int]
    bias: dict[int, Tensor]
    mask: dict[int, Tensor | None]


class SharedCache(Protocol):
    """One layer's key/value caches of many streams stepped together, a row each.

    :class:`focalcodec.streaming.batch.StreamBatch` passes one where a cache tensor
    goes; :class:`GatedRelativeAttention` then leaves the attention to it.
    """

    def attend(
        self,
        module: GatedRelativeAttention,
        x: Tensor,
        qkv: Tensor,
        position_bias: RowBias,
    ) -> Tensor:
        """Row ``b`` of ``x`` (B, T, dim) and of its fused projection ``qkv`` (B, T,
        3 dim) attends over its stream's past and itself, as ``module`` does for one
        stream; returns (B, T, dim) before the output projection."""
        ...


# Size of one block of the gated bias (and of a bias worth keeping for all layers).
# 16 MB: under glibc's 32 MB threshold for fresh memory mappings, so that the blocks of
# a long input reuse freed heap instead of faulting in new pages each time.
BLOCK_BYTES = 16 * 2**20


def _rows(bias: Tensor | BiasRows, start: int, stop: int) -> Tensor:
    """Query rows ``start..stop-1`` of a (..., T, K) bias or mask."""
    if isinstance(bias, BiasRows):
        return bias.block(start, stop)
    return bias[..., start:stop, :]


def _query_block(row_size: int, frames: int) -> int:
    """Queries per attention block so that one gated bias block stays near 16 MB."""
    if torch.jit.is_tracing():
        return frames  # a traced graph must not freeze a length-dependent loop
    return max(1, BLOCK_BYTES // (4 * row_size))


def _update_cache(
    cache: Tensor, k: Tensor, v: Tensor, start: int, shift: int, rows: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Write this call's keys/values at ``start`` and return (keys, values, new cache).

    Keys and values are (B, start + T, H, d), the cache rows before ``start`` followed
    by the new ones. The new cache is the written cache rolled left by ``shift`` rows
    and cut to ``rows``; it is assembled from slices, so each row is copied once.

    Caches live in memory as planes, keys and values apart, (2, B, H, rows, d), and are
    handed out as the (B, rows, H, d, 2) view of the checkpoint's layout (the same
    values): each head's keys are then contiguous, so that assembling them and
    attending over them copies no strided data. A cache in the plain layout (a state
    built elsewhere) is converted on first use.
    """
    end = start + k.shape[1]
    planes = cache.permute(4, 0, 2, 1, 3)  # (2, B, H, R, d)
    if not planes.is_contiguous():
        planes = planes.contiguous()
    if planes.shape[3] < start:
        planes = F.pad(planes, (0, 0, 0, start - planes.shape[3]))
    fresh = torch.stack([k, v]).transpose(2, 3)  # (2, B, H, T, d)
    parts = [planes[:, :, :, :start], fresh, planes[:, :, :, end:]]
    both = torch.cat(parts[:2], dim=3)  # keys and values, oldest first
    total = max(end, planes.shape[3])
    rows = total if rows is None else min(rows, total)
    order = _slices(parts, shift, total) + _slices(parts, 0, shift)
    new = torch.cat(order, dim=3)[:, :, :, :rows]
    return both[0].transpose(1, 2), both[1].transpose(1, 2), new.permute(1, 3, 2, 4, 0)


def _slices(parts: list[Tensor], begin: int, stop: int) -> list[Tensor]:
    """Rows ``begin..stop-1`` of the concatenation of cache planes ``parts``
    (2, B, H, rows, d) along their rows, as views."""
    out, offset = [], 0
    for part in parts:
        size = part.shape[3]
        lo, hi = max(begin - offset, 0), min(stop - offset, size)
        if lo < hi:
            out.append(part[:, :, :, lo:hi])
        offset += size
    return out
