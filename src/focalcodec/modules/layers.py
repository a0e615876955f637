"""Small building blocks shared by the encoder, the focal networks and the decoders.

Streaming convention used everywhere in `modules/`: a causal convolution keeps, as its state,
the last ``k - 1`` frames of its (padded) input in channel-last layout ``(B, k - 1, C)``. When
no state is given the sequence is at the start of a stream, and the missing past is filled by
edge replication or by zeros depending on the module (see SPEC section 7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ChunkFeedForward",
    "DynamicTanh",
    "FeedForward",
    "Snake1d",
    "extend_left",
    "conv_time",
    "same_pad",
]


def extend_left(
    x: Tensor, context: Tensor | None, size: int, mode: str = "replicate"
) -> tuple[Tensor, Tensor | None]:
    """Prepend ``size`` frames of past to a channel-last sequence.

    Parameters
    ----------
    x
        Sequence, shape (B, T, C).
    context
        The previous call's context, shape (B, size, C), or None at the start of a stream.
    size
        Number of past frames the consumer needs (kernel - 1).
    mode
        How to invent the past at the start of a stream: "replicate" (first frame) or "zeros".

    Returns
    -------
    The extended sequence (B, size + T, C) and the context for the next call (B, size, C)
    (None when size is 0).
    """
    if size == 0:
        return x, None
    if context is None:
        if mode == "replicate":
            context = x[:, :1].expand(-1, size, -1)
        else:
            context = x.new_zeros(x.shape[0], size, x.shape[2])
    x = torch.cat([context, x], dim=1)
    return x, x[:, x.shape[1] - size :]


def same_pad(x: Tensor, kernel_size: int) -> Tensor:
    """Zero-pad the time axis of (B, T, C) so that a stride-1 conv keeps the length.

    For even kernels the extra frame goes on the right, as PyTorch's ``padding="same"`` does.
    """
    total = kernel_size - 1
    if total == 0:
        return x
    return F.pad(x, (0, 0, total // 2, total - total // 2))


def conv_time(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """Apply a Conv1d to channel-last (B, T, C) input; returns (B, T', C')."""
    return conv(x.transpose(1, 2)).transpose(1, 2)


class Snake1d(nn.Module):
    """Periodic activation ``x + sin(a x)^2 / a`` with one learnable ``a`` per channel.

    Input and output are channel-last, shape (B, T, C). ``alpha`` is stored as (C, 1) for
    checkpoint compatibility.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha.T
        # The 1e-9 keeps the division finite if training drives alpha to zero.
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


class DynamicTanh(nn.Module):
    """Normalisation-free replacement of LayerNorm: ``tanh(alpha * x)``, one scalar alpha.

    Used by causal focal blocks because it needs no statistics over time or channels.
    """

    def __init__(self, normalized_shape: int, tanhscale_init: float = 0.5) -> None:
        super().__init__()
        self.normalized_shape = normalized_shape
        self.alpha = nn.Parameter(torch.full((1,), float(tanhscale_init)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * x)


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear -> dropout, on (B, T, dim)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, ffn_dim)
        self.out_proj = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(F.gelu(self.in_proj(x)))
        return self.dropout(self.out_proj(x))


class ChunkFeedForward(nn.Module):
    """The causal decompressor's refiner: an MLP over blocks of ``chunk_size`` frames.

    Frames are grouped in blocks of ``chunk_size`` counted from the first frame of the call,
    so each frame sees the rest of its block: this is where the decoder's lookahead lives.
    Input and output shape (B, T, dim); the result is added to the input.
    """

    def __init__(
        self, chunk_size: int, dim: int, ffn_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(chunk_size * dim, ffn_dim)
        self.out_proj = nn.Linear(ffn_dim, chunk_size * dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, dim = x.shape
        block = self.chunk_size * dim
        flat = x.reshape(batch, frames * dim)
        # Checkpoint compatibility: the original always pads, adding a whole block of zeros
        # when T is already a multiple of the block. The extra block is discarded below.
        pad = block - (frames * dim) % block
        h = F.pad(flat, (0, pad)).view(batch, -1, block)
        h = self.dropout(F.gelu(self.in_proj(h)))
        h = self.dropout(self.out_proj(h))
        h = h.reshape(batch, -1)[:, : frames * dim]
        return (flat + h).view(batch, frames, dim)
