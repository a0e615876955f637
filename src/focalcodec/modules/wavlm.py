"""WavLM encoder: convolutional front-end + transformer with gated relative position bias.

The released codecs use the first six layers of WavLM-Large. The causal variant (for
streaming) pads every convolution on the left only and restricts attention to chunks of
``1 + lookahead_size`` frames within a sliding window (see ``attention.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .attention import (
    GatedRelativeAttention,
    RelativePositionBias,
    RowBias,
    chunk_window_mask,
    padded_chunk_window_mask,
)
from .layers import (
    FeedForward,
    Linear,
    conv_time,
    extend_left,
    gelu_temp,
    time_mask,
)

__all__ = ["WavLM", "WavLMState"]


class WavLMState(NamedTuple):
    """Streaming state of the encoder.

    Attributes
    ----------
    position
        int64 0-dim tensor: cache row where the next call's first frame goes (the
        number of past frames attended to). Or, for many streams stepped together
        (:class:`focalcodec.streaming.batch.StreamBatch`), one such position per row,
        shape (B,), with shared contexts and caches (``layers.SharedContext``,
        ``attention.SharedCache``).
    contexts
        Left contexts: one per CNN layer (B, kernel - 1, C_in), then the positional
        conv's (B, conv_pos - 1, dim).
    kv_caches
        One key/value cache per transformer layer, (B, window_size, H, head_dim, 2).
    """

    position: Tensor
    contexts: list[Tensor]
    kv_caches: list[Tensor]


class ConvBlock(nn.Module):
    """Conv1d (no bias) -> LayerNorm over channels -> GELU, on channel-last input."""

    def __init__(
        self, in_dim: int, out_dim: int, kernel_size: int, stride: int, dropout: float
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, stride, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def forward(
        self, x: Tensor, context: Tensor | None, causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, C_in) -> (B, T', C_out) and the next left context."""
        if causal:
            x, context = extend_left(x, context, self.kernel_size - 1, "replicate")
        elif x.shape[1] < self.kernel_size:
            x = F.pad(x, (0, 0, 0, self.kernel_size - x.shape[1]))
        y = self.norm(self.dropout(conv_time(self.conv, x)))
        return gelu_temp(y), context


class FeatureExtractor(nn.Module):
    """Stack of strided ConvBlocks: waveform (B, N, 1) -> frames (B, F, C)."""

    def __init__(self, hidden_dims, kernel_sizes, strides, dropout: float) -> None:
        super().__init__()
        in_dims = [1, *hidden_dims[:-1]]
        self.layers = nn.ModuleList(
            ConvBlock(i, o, k, s, dropout)
            for i, o, k, s in zip(in_dims, hidden_dims, kernel_sizes, strides)
        )

    def forward(
        self, x: Tensor, contexts: list | None, causal: bool
    ) -> tuple[Tensor, list]:
        """(B, N, 1) -> (B, F, C) and the next call's contexts (one per layer).

        Long inputs without contexts run through the stack in blocks of
        :data:`FRONT_END_BLOCK` output frames (inference only), with the same frames
        as a whole pass: causal blocks hand their contexts on as streaming does;
        non-causal ones read the few samples of overlap that their first frames need.
        """
        if contexts is not None or torch.is_grad_enabled() or torch.jit.is_tracing():
            return self._stack(x, contexts, causal)
        step = FRONT_END_BLOCK * self.stride
        if x.shape[1] <= 2 * step:
            return self._stack(x, contexts, causal)
        if causal:
            pieces = []
            for start in range(0, x.shape[1], step):
                y, contexts = self._stack(x[:, start : start + step], contexts, True)
                pieces.append(y)
            return torch.cat(pieces, dim=1), contexts
        frames = self.out_frames(x.shape[1])
        pieces = []
        for first in range(0, frames, FRONT_END_BLOCK):
            begin, end = self.in_span(first, min(first + FRONT_END_BLOCK, frames))
            pieces.append(self._stack(x[:, begin:end], None, False)[0])
        return torch.cat(pieces, dim=1), [None] * len(self.layers)

    @property
    def stride(self) -> int:
        """Input samples per output frame."""
        return math.prod(layer.stride for layer in self.layers)

    def out_frames(self, samples: int) -> int:
        """Output frames of a non-causal pass over ``samples`` >= the receptive field."""
        for layer in self.layers:
            samples = (samples - layer.kernel_size) // layer.stride + 1
        return samples

    def in_span(self, first: int, stop: int) -> tuple[int, int]:
        """Input samples [begin, end) that non-causal output frames [first, stop) read."""
        for layer in reversed(self.layers):
            first = first * layer.stride
            stop = (stop - 1) * layer.stride + layer.kernel_size
        return first, stop

    def _stack(
        self, x: Tensor, contexts: list | None, causal: bool
    ) -> tuple[Tensor, list]:
        contexts = contexts or [None] * len(self.layers)
        new_contexts = []
        for layer, context in zip(self.layers, contexts):
            x, context = layer(x, context, causal)
            new_contexts.append(context)
        return x, new_contexts


# Output frames per block of an offline front-end pass (2.56 s of 16 kHz audio). Its
# largest tensor, the first layer's output, then stays near 16 MB, under glibc's
# 32 MB limit for serving allocations from the heap: blocks reuse freed memory instead
# of faulting in fresh pages for every tensor (two of 65 MB per 10 s of audio in one
# pass), and long inputs peak far lower.
FRONT_END_BLOCK = 128


class PositionalConv(nn.Module):
    """Grouped convolution whose GELU output is added to the input as a position signal."""

    def __init__(self, dim: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=groups)

    def forward(
        self, x: Tensor, context: Tensor | None, causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, dim) -> (B, T, dim) with the position signal added."""
        if causal:
            padded, context = extend_left(x, context, self.kernel_size - 1, "replicate")
            h = conv_time(self.conv, padded)
        else:
            half = self.kernel_size // 2
            h = conv_time(self.conv, F.pad(x, (0, 0, half, half)))
            # An even kernel with symmetric padding yields one frame too many.
            h = h[:, : x.shape[1]]
        return x + gelu_temp(h), context


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: gated relative attention, then a feed-forward block."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        # Registration order fixes the checkpoint key order: norm, attention, norm, FFN.
        for name, module in (
            ("attention_norm", nn.LayerNorm(dim)),
            ("attention", GatedRelativeAttention(dim, num_heads, dropout)),
            ("feed_forward_norm", nn.LayerNorm(dim)),
            ("feed_forward", FeedForward(dim, ffn_dim, dropout)),
        ):
            self.add_module(name, module)

    def forward(
        self,
        x,
        position_bias,
        mask=None,
        cache=None,
        cache_start=0,
        cache_shift=0,
        cache_rows=None,
        key_mask=None,
    ):
        h, cache = self.attention(
            self.attention_norm(x),
            position_bias,
            mask,
            cache,
            cache_start,
            cache_shift,
            cache_rows,
            key_mask,
        )
        x = x + self.dropout(h)
        return x + self.feed_forward(self.feed_forward_norm(x)), cache


class TransformerEncoder(nn.Module):
    """Positional conv + relative position bias + a stack of TransformerLayers."""

    def __init__(
        self,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        num_buckets: int,
        max_distance: int,
        dropout: float,
        conv_pos: int,
        conv_pos_groups: int,
    ) -> None:
        super().__init__()
        self.positional_embedding = PositionalConv(dim, conv_pos, conv_pos_groups)
        self.relative_embedding = RelativePositionBias(
            num_buckets, max_distance, num_heads
        )
        self.layers = nn.ModuleList(
            TransformerLayer(dim, ffn_dim, num_heads, dropout)
            for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)


class WavLM(nn.Module):
    """WavLM encoder: waveform (B, N) at 16 kHz -> features (B, F, dim) at 50 Hz.

    Parameters follow the official ``encoder_config``. ``max_cached_steps`` and
    ``use_flex_attention`` are accepted for config compatibility; the position bias is
    always computed exactly for the frames at hand, which gives the same numbers as the
    original cache without its memory cost.
    """

    sample_rate = 16000

    def __init__(
        self,
        hidden_dims=(512,) * 7,
        kernel_sizes=(10, 3, 3, 3, 3, 2, 2),
        strides=(5, 2, 2, 2, 2, 2, 2),
        num_layers: int = 6,
        dim: int = 1024,
        ffn_dim: int = 4096,
        num_heads: int = 16,
        num_buckets: int = 320,
        max_distance: int = 800,
        max_cached_steps: int = 2048,
        dropout: float = 0.0,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        causal: bool = False,
        window_size: int = 512,
        lookahead_size: int = 3,
        use_flex_attention: bool = False,
    ) -> None:
        super().__init__()
        if 0 < max_cached_steps < window_size:
            raise ConfigError(
                f"encoder_config: max_cached_steps ({max_cached_steps}) must be 0 or at "
                f"least window_size ({window_size})"
            )
        self.causal = causal
        self.window_size = window_size
        self.lookahead_size = lookahead_size
        self.max_cached_steps = max_cached_steps
        self.downsample_factor = math.prod(strides)
        self.chunk_size = self.downsample_factor * (1 + lookahead_size)
        self.feature_extractor = FeatureExtractor(
            hidden_dims, kernel_sizes, strides, dropout
        )
        cnn_width = hidden_dims[-1]
        self.norm = nn.LayerNorm(cnn_width)
        self.feature_proj = Linear(cnn_width, dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(
            num_layers,
            dim,
            ffn_dim,
            num_heads,
            num_buckets,
            max_distance,
            dropout,
            conv_pos,
            conv_pos_groups,
        )

    def forward(
        self,
        sig: Tensor,
        state: WavLMState | None = None,
        need_state: bool = True,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, WavLMState | None]:
        """Encode a waveform (B, N) into features (B, F, dim).

        ``state`` continues a stream (causal models only). With ``need_state=False`` no
        key/value caches are built, which saves memory for offline use. Non-causal models
        return None as state. ``lengths`` (B,) gives the real samples of each item of a
        right-padded batch (offline only): padded frames are then kept out of attention
        and set to zero before the positional convolution, so the first
        ``frame_lengths(lengths)`` frames of each item are what it gets alone (up to
        float rounding).
        """
        if lengths is not None and (state is not None or need_state):
            raise ValueError(
                "lengths is for offline encoding: no state, need_state=False"
            )
        contexts = state.contexts if state is not None else None
        x, cnn_contexts = self.feature_extractor(
            sig.unsqueeze(-1), contexts[:-1] if contexts else None, self.causal
        )
        x = self.dropout(self.feature_proj(self.norm(x)))
        valid = None
        if lengths is not None:
            valid = time_mask(self.frame_lengths(lengths), x.shape[1])
        if not self.causal:
            return self._full_attention(x, valid), None
        return self._chunked_attention(x, cnn_contexts, state, need_state, valid)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frames (B,) that items of ``lengths`` (B,) samples give on their own."""
        for layer in self.feature_extractor.layers:
            k, s = layer.kernel_size, layer.conv.stride[0]
            if self.causal:  # k - 1 frames of left context: ceil(T / s)
                lengths = torch.div(lengths + s - 1, s, rounding_mode="floor")
            else:  # no padding (inputs shorter than a kernel are padded to it)
                lengths = torch.div(lengths.clamp(min=k) - k, s, rounding_mode="floor")
                lengths = lengths + 1
        return lengths

    def _full_attention(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        enc = self.encoder
        key_mask = None
        if valid is not None:
            # Alone, an item's positional conv sees zeros past its end.
            x = x.masked_fill(~valid, 0.0)
            key_mask = _key_mask(valid, x.dtype)
        x, _ = enc.positional_embedding(x, None, causal=False)
        x = enc.dropout(x)
        frames = x.shape[1]
        bias = enc.relative_embedding.layer_bias(0, frames, frames)
        for layer in enc.layers:
            x, _ = layer(x, bias, key_mask=key_mask)
        return x

    def _chunked_attention(
        self,
        x: Tensor,
        cnn_contexts: list,
        state: WavLMState | None,
        need_state: bool,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, WavLMState | None]:
        if state is not None and state.position.dim() == 1:
            return self._row_attention(x, cnn_contexts, state)
        enc = self.encoder
        chunk = 1 + self.lookahead_size
        window = self.window_size
        start = int(state.position) if state is not None else 0
        frames = x.shape[1]
        end = start + frames
        bias = enc.relative_embedding.layer_bias(start, frames, end)
        mask = None
        if frames > chunk:
            mask = chunk_window_mask(
                start, frames, end, chunk, window, x.dtype, x.device
            )
        pos_context = state.contexts[-1] if state is not None else None
        x, pos_context = enc.positional_embedding(x, pos_context, causal=True)
        x = enc.dropout(x)
        if not need_state and state is None:
            if valid is not None:
                lengths = valid[:, :, 0].sum(1)
                mask = padded_chunk_window_mask(lengths, frames, chunk, window, x.dtype)
            for layer in enc.layers:
                x, _ = layer(x, bias, mask)
            return x, None
        cache_start = min(start, window - chunk)
        shift = max(end - window + chunk, 0)
        caches = []
        for i, layer in enumerate(enc.layers):
            if state is not None:
                cache = state.kv_caches[i]
            else:
                cache = layer.attention.new_cache(x)
            x, cache = layer(x, bias, mask, cache, cache_start, shift, window)
            caches.append(cache)
        position = torch.tensor(min(end, window - chunk), dtype=torch.long)
        return x, WavLMState(position, [*cnn_contexts, pos_context], caches)

    def _row_attention(
        self, x: Tensor, cnn_contexts: list, state: WavLMState
    ) -> tuple[Tensor, WavLMState]:
        """:meth:`_chunked_attention` of many streams, row ``b`` at ``position[b]``.

        Each row gets the bias and mask that its stream gets alone; the shared caches
        of ``state`` attend row by row over each stream's own past.
        """
        enc = self.encoder
        chunk = 1 + self.lookahead_size
        window = self.window_size
        frames = x.shape[1]
        starts = state.position.tolist()
        bias, mask = {}, {}
        for start in sorted(set(starts)):
            end = start + frames
            bias[start] = enc.relative_embedding.layer_bias(start, frames, end)
            mask[start] = None
            if frames > chunk:
                mask[start] = chunk_window_mask(
                    start, frames, end, chunk, window, x.dtype, x.device
                )
        x, pos_context = enc.positional_embedding(x, state.contexts[-1], causal=True)
        x = enc.dropout(x)
        rows = RowBias(starts, bias, mask)
        for layer, cache in zip(enc.layers, state.kv_caches):
            x, _ = layer(x, rows, None, cache)
        position = (state.position + frames).clamp(max=window - chunk)
        contexts = [*cnn_contexts, pos_context]
        return x, WavLMState(position, contexts, list(state.kv_caches))


def _key_mask(valid: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive key mask (B, T) from a (B, T, 1) validity mask: -inf on padding."""
    mask = torch.zeros(valid.shape[:2], dtype=dtype, device=valid.device)
    return mask.masked_fill(~valid[..., 0], float("-inf"))
