"""ConvNeXt backbone shared by the Vocos and WaveNeXt decoders."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import Linear, conv_time, extend_left, gelu_temp, same_pad

__all__ = ["ConvNeXtBackbone", "ConvNeXtDecoder"]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LN -> MLP (GELU) -> layer scale, residual; on (B, T, dim)."""

    def __init__(
        self, dim: int, ffn_dim: int, kernel_size: int, layerscale_init: float
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, ffn_dim)
        self.pwconv2 = Linear(ffn_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layerscale_init)))

    def forward(self, x: Tensor, padded: Tensor) -> Tensor:
        """``padded`` is ``x`` with its time padding (same or causal) already added."""
        h = self.norm(conv_time(self.dwconv, padded))
        h = self.pwconv2(gelu_temp(self.pwconv1(h)))
        return x + self.gamma * h


class ConvNeXtBackbone(nn.Module):
    """Embedding conv + LN + ConvNeXt blocks + LN: (B, T, input_dim) -> (B, T, dim).

    ``causal_pad`` says how the past is invented at the start of a causal stream:
    "replicate" for Vocos, "zeros" for WaveNeXt (checkpoint behaviour, SPEC section 6).
    """

    def __init__(
        self,
        input_dim: int,
        dim: int,
        ffn_dim: int,
        num_layers: int,
        kernel_size: int,
        layerscale_init: float | None,
        causal: bool,
        causal_pad: str,
    ) -> None:
        super().__init__()
        # For subclasses that override a hook: built alike (deploy.swap.rebuild).
        self.init_kwargs = {
            "input_dim": input_dim,
            "dim": dim,
            "ffn_dim": ffn_dim,
            "num_layers": num_layers,
            "kernel_size": kernel_size,
            "layerscale_init": layerscale_init,
            "causal": causal,
            "causal_pad": causal_pad,
        }
        self.kernel_size = kernel_size
        self.causal = causal
        self.causal_pad = causal_pad
        self.embedding = nn.Conv1d(input_dim, dim, kernel_size)
        self.input_norm = nn.LayerNorm(dim, eps=1e-6)
        scale = 1.0 / num_layers if layerscale_init is None else layerscale_init
        self.layers = nn.ModuleList(
            ConvNeXtBlock(dim, ffn_dim, kernel_size, scale) for _ in range(num_layers)
        )
        self.output_norm = nn.LayerNorm(dim, eps=1e-6)

    def extend_context(
        self, x: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Padded input (B, k - 1 + T, C) of a convolution and the next context.

        Causal: the previous call's context (B, k - 1, C) on the left, or at the start of
        a stream (``context`` None) the past invented as ``causal_pad`` says.
        """
        if self.causal:
            return extend_left(x, context, self.kernel_size - 1, self.causal_pad)
        return same_pad(x, self.kernel_size), None

    def forward(
        self, x: Tensor, state: list | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, T, input_dim) -> (B, T, dim) and the left contexts (causal only)."""
        padded, ctx = self.extend_context(x, state[0] if state else None)
        contexts = [ctx]
        x = self.input_norm(conv_time(self.embedding, padded))
        for i, layer in enumerate(self.layers):
            padded, ctx = self.extend_context(x, state[i + 1] if state else None)
            contexts.append(ctx)
            x = layer(x, padded)
        return self.output_norm(x), contexts if self.causal else None


class ConvNeXtDecoder(nn.Module):
    """Backbone + waveform head; Vocos and WaveNeXt differ only in the head and padding.

    Subclasses set ``head``. Input (B, T, input_dim), output (B, T * hop_length).
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        kernel_size: int,
        layerscale_init: float | None,
        hop_length: int,
        causal: bool,
        causal_pad: str,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.upsample_factor = hop_length
        self.chunk_size = 1
        self.backbone = ConvNeXtBackbone(
            input_dim,
            dim,
            ffn_dim,
            num_layers,
            kernel_size,
            layerscale_init,
            causal,
            causal_pad,
        )

    def forward(
        self, feats: Tensor, state: list | None = None
    ) -> tuple[Tensor, list | None]:
        """(B, T, input_dim) -> waveform (B, T * hop) and the backbone contexts."""
        x, state = self.backbone(feats, state)
        return self.head(x), state
