"""WaveNeXt decoder: ConvNeXt backbone + a linear head that emits the samples directly."""

from __future__ import annotations

from torch import Tensor, nn

from .convnext import ConvNeXtDecoder
from .layers import Linear

__all__ = ["WaveNeXt"]


class WaveNeXtHead(nn.Module):
    """Linear projection of each frame to ``hop_length`` samples, clamped to [-1, 1]."""

    def __init__(self, dim: int, hop_length: int) -> None:
        super().__init__()
        self.proj = Linear(dim, hop_length)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, dim) -> (B, T * hop)."""
        return self.proj(x).reshape(x.shape[0], -1).clamp(-1.0, 1.0)


class WaveNeXt(ConvNeXtDecoder):
    """WaveNeXt decoder: features (B, T, input_dim) -> waveform (B, T * hop_length).

    With hop 480 on 50 Hz features it produces 24 kHz audio.
    """

    def __init__(
        self,
        input_dim: int = 1024,
        num_layers: int = 8,
        dim: int = 1024,
        ffn_dim: int = 2048,
        kernel_size: int = 7,
        layerscale_init: float | None = None,
        hop_length: int = 480,
        causal: bool = False,
    ) -> None:
        super().__init__(
            input_dim,
            num_layers,
            dim,
            ffn_dim,
            kernel_size,
            layerscale_init,
            hop_length,
            causal,
            causal_pad="zeros",
        )
        self.head = WaveNeXtHead(dim, hop_length)
