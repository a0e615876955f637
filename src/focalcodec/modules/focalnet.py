"""Focal-modulation networks: the compressor (FocalEncoder) and decompressor (FocalDecoder).

A focal block mixes time with a hierarchy of depthwise convolutions whose gated outputs
modulate a per-frame query, plus a global context: the time average in non-causal models,
a ``window_size``-tap causal convolution in causal ones. Streaming state of a block is the
list of left contexts of its depthwise convolutions (``layers.py`` convention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    ChunkFeedForward,
    DynamicTanh,
    FeedForward,
    Linear,
    Snake1d,
    conv_time,
    extend_left,
    gelu_temp,
    same_pad,
    time_mask,
)

__all__ = ["FocalDecoder", "FocalEncoder"]


def _norm(dim: int, causal: bool, tanhscale_init: float) -> nn.Module:
    # Causal blocks must not normalise over statistics they cannot see yet.
    return DynamicTanh(dim, tanhscale_init) if causal else nn.LayerNorm(dim)


class FocalModulation(nn.Module):
    """Focal modulation of a (B, T, dim) sequence; see the module docstring.

    The causal levels meet their past through :meth:`extend_context`, a hook that a
    subclass may override to keep the same values in another layout.
    """

    def __init__(
        self,
        dim: int,
        focal_window: int,
        focal_level: int,
        focal_factor: int,
        dropout: float,
        use_post_norm: bool,
        tanhscale_init: float,
        normalize_modulator: bool,
        causal: bool,
        window_size: int,
    ) -> None:
        super().__init__()
        # For subclasses that override a hook: built alike (deploy.swap.rebuild).
        self.init_kwargs = {
            "dim": dim,
            "focal_window": focal_window,
            "focal_level": focal_level,
            "focal_factor": focal_factor,
            "dropout": dropout,
            "use_post_norm": use_post_norm,
            "tanhscale_init": tanhscale_init,
            "normalize_modulator": normalize_modulator,
            "causal": causal,
            "window_size": window_size,
        }
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.causal = causal
        self.kernel_sizes = [
            focal_factor * i + focal_window for i in range(focal_level)
        ]
        if causal:
            self.kernel_sizes.append(window_size)
        self.in_proj = Linear(dim, 2 * dim + focal_level + 1)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, k, groups=dim), nn.GELU())
            for k in self.kernel_sizes
        )
        self.context_proj = nn.Conv1d(dim, dim, 1)
        self.out_proj = Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = (
            _norm(dim, causal, tanhscale_init) if use_post_norm else nn.Identity()
        )

    def forward(
        self, x: Tensor, contexts: list | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, T, dim) -> (B, T, dim), with the level contexts for the next call.

        ``lengths`` (B,): real frames of each item of a right-padded batch. Non-causal
        levels then see zeros past each item's end and the global average covers its
        real frames only (causal levels never look right, so need nothing).
        """
        query, ctx, gates = self.in_proj(x).split(
            [self.dim, self.dim, self.focal_level + 1], -1
        )
        valid = None
        if lengths is not None and not self.causal:
            valid = time_mask(lengths, x.shape[1])
        modulator = 0.0
        new_contexts = [] if self.causal else None
        for level, (block, k) in enumerate(zip(self.layers, self.kernel_sizes)):
            if self.causal:
                past = contexts[level] if contexts else None
                padded, past = self.extend_context(ctx, past, k - 1)
                new_contexts.append(past)
            else:
                padded = same_pad(
                    ctx if valid is None else ctx.masked_fill(~valid, 0.0), k
                )
            ctx = gelu_temp(conv_time(block[0], padded))
            modulator = modulator + ctx * gates[..., level : level + 1]
        if not self.causal:
            # Global context: time average of the last level, padding frames included.
            if valid is None:
                pooled = F.gelu(ctx.mean(1, keepdim=True))
            else:
                # Summed in float32: under bf16 autocast a length such as 3001 frames
                # is not representable.
                real = ctx.masked_fill(~valid, 0.0)
                total = real.sum(1, keepdim=True, dtype=torch.float32)
                pooled = F.gelu((total / lengths[:, None, None]).to(ctx.dtype))
            modulator = modulator + pooled * gates[..., self.focal_level :]
        if self.normalize_modulator:
            modulator = modulator / (self.focal_level + 1)
        y = query * conv_time(self.context_proj, modulator)
        y = self.dropout(self.out_proj(self.norm(y)))
        return y, new_contexts

    def extend_context(
        self, ctx: Tensor, past: Tensor | None, size: int
    ) -> tuple[Tensor, Tensor]:
        """Causal level input (B, size + T, dim) and the next context (B, size, dim).

        ``past`` is the previous call's context, or None at the start of a stream
        (then the first frame is repeated).
        """
        return extend_left(ctx, past, size, "replicate")


class FocalBlock(nn.Module):
    """Focal modulation + feed-forward, each residual, pre-norm or post-norm."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        focal_window: int,
        focal_level: int,
        focal_factor: int,
        dropout: float,
        use_post_norm: bool,
        use_layerscale: bool,
        layerscale_init: float,
        tanhscale_init: float,
        normalize_modulator: bool,
        causal: bool,
        window_size: int,
    ) -> None:
        super().__init__()
        self.use_post_norm = use_post_norm
        self.modulation_norm = _norm(dim, causal, tanhscale_init)
        self.modulation = FocalModulation(
            dim,
            focal_window,
            focal_level,
            focal_factor,
            dropout,
            use_post_norm,
            tanhscale_init,
            normalize_modulator,
            causal,
            window_size,
        )
        self.feed_forward_norm = _norm(dim, causal, tanhscale_init)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)
        self.use_layerscale = use_layerscale
        if use_layerscale:
            self.modulation_gamma = nn.Parameter(
                torch.full((dim,), float(layerscale_init))
            )
            self.feed_forward_gamma = nn.Parameter(
                torch.full((dim,), float(layerscale_init))
            )

    def forward(
        self, x: Tensor, contexts: list | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, T, dim) -> (B, T, dim); ``lengths`` as in :class:`FocalModulation`."""
        if self.use_post_norm:
            h, contexts = self.modulation(x, contexts, lengths)
            h = self.modulation_norm(h)
        else:
            h, contexts = self.modulation(self.modulation_norm(x), contexts, lengths)
        if self.use_layerscale:
            h = self.modulation_gamma * h
        x = x + h
        if self.use_post_norm:
            h = self.feed_forward_norm(self.feed_forward(x))
        else:
            h = self.feed_forward(self.feed_forward_norm(x))
        if self.use_layerscale:
            h = self.feed_forward_gamma * h
        return x + h, contexts


class DownScale(nn.Module):
    """Strided conv (kernel = stride = factor) followed by Snake, on (B, T, C)."""

    def __init__(self, in_dim: int, out_dim: int, factor: int, causal: bool) -> None:
        super().__init__()
        self.factor = factor
        self.causal = causal
        self.downscale = nn.Conv1d(in_dim, out_dim, factor, factor)
        self.activation = Snake1d(out_dim)

    def forward(
        self, x: Tensor, context: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(B, T, C_in) -> (B, T', C_out); ``lengths`` (B,) real frames of a padded
        batch, whose padding is set to zero first (an item alone is padded with
        zeros)."""
        f = self.factor
        if self.causal:
            x, context = _causal_resample_pad(x, context, f)
        else:
            if lengths is not None and f > 1:
                x = x.masked_fill(~time_mask(lengths, x.shape[1]), 0.0)
            # Right padding (T - f) mod f: equals ceil padding except when T < f.
            pad = (x.shape[1] - f) % f
            if pad:
                x = F.pad(x, (0, 0, 0, pad))
        return self.activation(conv_time(self.downscale, x)), context

    def out_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames (B,) that inputs of ``lengths`` (B,) frames give alone."""
        f = self.factor
        if self.causal:
            return torch.div(lengths + f - 1, f, rounding_mode="floor")
        padded = lengths + torch.remainder(lengths - f, f)
        return torch.div(padded - f, f, rounding_mode="floor") + 1


class UpScale(nn.Module):
    """Snake followed by a transposed conv (kernel = stride = factor), on (B, T, C)."""

    def __init__(self, in_dim: int, out_dim: int, factor: int, causal: bool) -> None:
        super().__init__()
        self.factor = factor
        self.causal = causal
        self.activation = Snake1d(in_dim)
        self.upscale = nn.ConvTranspose1d(in_dim, out_dim, factor, factor)

    def forward(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        frames = x.shape[1]
        if self.causal:
            x, context = _causal_resample_pad(x, context, self.factor)
        y = conv_time(self.upscale, self.activation(x))
        return y[:, y.shape[1] - frames * self.factor :], context


def _causal_resample_pad(
    x: Tensor, context: Tensor | None, factor: int
) -> tuple[Tensor, Tensor]:
    """Left context of ``factor - 1`` frames for causal Down/UpScale.

    With factor 1 no padding is needed, but the state still carries the last frame (a
    1-frame placeholder) so that state layouts match the original checkpoints' code.
    """
    if factor > 1:
        return extend_left(x, context, factor - 1, "replicate")
    return x, x[:, -1:]


class FocalDownScale(nn.Module):
    """DownScale then a FocalBlock at the output width."""

    def __init__(self, in_dim: int, out_dim: int, factor: int, **block) -> None:
        super().__init__()
        self.downscale = DownScale(in_dim, out_dim, factor, block["causal"])
        self.focal_block = FocalBlock(out_dim, 4 * out_dim, **block)

    def forward(
        self, x: Tensor, state: list | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list]:
        """``lengths`` (B,): real input frames of a padded batch (see DownScale)."""
        x, ctx = self.downscale(x, state[0] if state else None, lengths)
        if lengths is not None:
            lengths = self.downscale.out_lengths(lengths)
        x, block_ctx = self.focal_block(x, state[1:] if state else None, lengths)
        return x, [ctx, *(block_ctx or [])]


class FocalUpScale(nn.Module):
    """A FocalBlock at the input width then UpScale."""

    def __init__(self, in_dim: int, out_dim: int, factor: int, **block) -> None:
        super().__init__()
        self.focal_block = FocalBlock(in_dim, 4 * in_dim, **block)
        self.upscale = UpScale(in_dim, out_dim, factor, block["causal"])

    def forward(self, x: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        x, block_ctx = self.focal_block(x, state[:-1] if state else None)
        x, ctx = self.upscale(x, state[-1] if state else None)
        return x, [*(block_ctx or []), ctx]


# Options shared by every focal block of a compressor or decompressor.
_FOCAL_OPTIONS = (
    "focal_window",
    "focal_level",
    "focal_factor",
    "dropout",
    "use_post_norm",
    "use_layerscale",
    "layerscale_init",
    "tanhscale_init",
    "normalize_modulator",
    "causal",
)


def _focal_options(arguments: dict) -> dict:
    """The focal-block keyword arguments among a constructor's ``locals()``."""
    return {name: arguments[name] for name in _FOCAL_OPTIONS}


def _run_layers(layers: nn.ModuleList, x: Tensor, state: list | None):
    """Apply resampling focal layers in turn, threading each one's streaming state."""
    new_state = []
    for i, layer in enumerate(layers):
        x, ctx = layer(x, state[i] if state else None)
        new_state.append(ctx)
    return x, new_state


class FocalEncoder(nn.Module):
    """Compressor: features (B, F, input_dim) -> unnormalised latents (B, L, output_dim)."""

    def __init__(
        self,
        input_dim: int = 1024,
        output_dim: int = 12,
        hidden_dims=(1024, 1024, 1024),
        downscale_factors=(1, 1, 1),
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
    ) -> None:
        super().__init__()
        self.causal = causal
        block = _focal_options(locals())
        block["window_size"] = window_size
        pairs = list(zip(hidden_dims, downscale_factors))
        in_dims = [input_dim, *[h for h, _ in pairs[:-1]]]
        self.layers = nn.ModuleList(
            FocalDownScale(i, h, f, **block) for i, (h, f) in zip(in_dims, pairs)
        )
        self.downsample_factor = math.prod(f for _, f in pairs)
        self.chunk_size = self.downsample_factor
        self.dropout = nn.Dropout(dropout)
        self.out_proj = Linear(pairs[-1][0], output_dim)

    def forward(
        self, feats: Tensor, state: list | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, F, input_dim) -> (B, L, output_dim) and per-layer contexts (causal).

        ``lengths`` (B,): real frames of each item of a right-padded batch (offline
        only); its first ``out_lengths(lengths)`` latents are then what it gets alone.
        """
        if lengths is None:
            x, new_state = _run_layers(self.layers, feats, state)
        else:
            if state is not None:
                raise ValueError("lengths is for offline encoding, without state")
            x, new_state = feats, None
            for layer in self.layers:
                x, _ = layer(x, None, lengths)
                lengths = layer.downscale.out_lengths(lengths)
        lats = self.out_proj(self.dropout(x))
        return lats, new_state if self.causal else None

    def out_lengths(self, lengths: Tensor) -> Tensor:
        """Latents (B,) that inputs of ``lengths`` (B,) frames give alone."""
        for layer in self.layers:
            lengths = layer.downscale.out_lengths(lengths)
        return lengths


class FocalDecoder(nn.Module):
    """Decompressor: codes (B, L, input_dim) -> features (B, L * up, output_dim)."""

    def __init__(
        self,
        input_dim: int = 12,
        output_dim: int = 1024,
        hidden_dims=(1024, 1024, 1024),
        upscale_factors=(1, 1, 1),
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
        last_window_size: int = 512,
        lookahead_size: int = 3,
    ) -> None:
        super().__init__()
        self.causal = causal
        block = _focal_options(locals())
        dims = [*hidden_dims, output_dim]
        self.in_proj = Linear(input_dim, dims[0])
        self.dropout = nn.Dropout(dropout)
        steps = list(zip(dims[:-1], dims[1:], upscale_factors))
        self.layers = nn.ModuleList(
            FocalUpScale(
                i,
                o,
                f,
                window_size=last_window_size
                if n == len(hidden_dims) - 1
                else window_size,
                **block,
            )
            for n, (i, o, f) in enumerate(steps)
        )
        self.upsample_factor = math.prod(f for *_, f in steps)
        self.chunk_size = 1 + lookahead_size
        if causal and lookahead_size > 0:
            chunk = 1 + lookahead_size
            self.refiner = ChunkFeedForward(chunk, dims[-1], chunk * dims[-1], dropout)
        else:
            self.refiner = None

    def forward(
        self, codes: Tensor, state: list | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, L, input_dim) -> (B, L * up, output_dim) and per-layer contexts (causal)."""
        x, new_state = _run_layers(
            self.layers, self.dropout(self.in_proj(codes)), state
        )
        if self.refiner is not None:
            x = self.refiner(x)
        return x, new_state if self.causal else None
