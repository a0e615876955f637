"""Small building blocks shared by the encoder, the focal networks and the decoders.

Streaming convention used everywhere in `modules/`: a causal convolution keeps, as its state,
the last ``k - 1`` frames of its (padded) input in channel-last layout ``(B, k - 1, C)``. When
no state is given the sequence is at the start of a stream, and the missing past is filled by
edge replication or by zeros depending on the module (see SPEC section 7).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels

__all__ = [
    "ChunkFeedForward",
    "DynamicTanh",
    "FeedForward",
    "Linear",
    "SharedContext",
    "Snake1d",
    "extend_left",
    "conv_time",
    "gelu_temp",
    "same_pad",
    "time_mask",
]


class Linear(nn.Linear):
    """``nn.Linear`` whose products run on the kernel backend of :mod:`.kernels`.

    The same parameters, initialisation and ``state_dict`` keys as ``nn.Linear``; where
    autograd records the call (training), on a GPU, under autocast or tracing, it is
    ``nn.Linear``. Input (..., in_features), output (..., out_features).
    """

    def forward(self, x: Tensor) -> Tensor:
        return kernels.linear(x, self.weight, self.bias)


def gelu_temp(x: Tensor) -> Tensor:
    """``F.gelu(x)`` of a temporary that nothing else reads, in place when allowed.

    In inference this saves a tensor the size of ``x`` (the WavLM front-end's are
    65 MB per 10 s of audio) and the page faults of filling it; the values are those
    of ``F.gelu``. Autograd (which keeps ``x``) and tracing get ``F.gelu``.
    """
    if (torch.is_grad_enabled() and x.requires_grad) or torch.jit.is_tracing():
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class SharedContext(Protocol):
    """One convolution's left contexts of many streams stepped together, a row each.

    :class:`focalcodec.streaming.batch.StreamBatch` passes one where a context tensor
    goes: :func:`extend_left` then asks it for the extended sequence, in which every
    row gets its own stream's past (or, at a stream's first block, the past invented
    as ``mode`` says), and it is the context for the next call too.
    """

    def extend(self, x: Tensor, size: int, mode: str) -> tuple[Tensor, SharedContext]:
        """As :func:`extend_left`: (B, size + T, C) and the context for the next call."""
        ...


def extend_left(
    x: Tensor,
    context: Tensor | SharedContext | None,
    size: int,
    mode: str = "replicate",
) -> tuple[Tensor, Tensor | SharedContext | None]:
    """Prepend ``size`` frames of past to a channel-last sequence.

    Parameters
    ----------
    x
        Sequence, shape (B, T, C).
    context
        The previous call's context, shape (B, size, C), or None at the start of a stream,
        or a :class:`SharedContext` (many streams, a row each).
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
    if context is not None and not isinstance(context, Tensor):
        return context.extend(x, size, mode)
    if context is None:
        if mode == "replicate":
            context = x[:, :1].expand(-1, size, -1)
        else:
            context = x.new_zeros(x.shape[0], size, x.shape[2])
    x = torch.cat([context, x], dim=1)
    return x, x[:, x.shape[1] - size :]


def time_mask(lengths: Tensor, frames: int) -> Tensor:
    """Which frames of a right-padded batch are real: (B, frames, 1) bool.

    ``lengths`` (B,) holds each item's number of real frames. Padded batches use it to
    set padding back to zero before a convolution over time, so that an item's real
    frames see the zeros they would see alone.
    """
    steps = torch.arange(frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None])[..., None]


def same_pad(x: Tensor, kernel_size: int) -> Tensor:
    """Zero-pad the time axis of (B, T, C) so that a stride-1 conv keeps the length.

    For even kernels the extra frame goes on the right, as PyTorch's ``padding="same"`` does.
    """
    total = kernel_size - 1
    if total == 0:
        return x
    return F.pad(x, (0, 0, total // 2, total - total // 2))


def conv_time(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply an unpadded Conv1d or ConvTranspose1d to channel-last input.

    The result equals ``conv(x.transpose(1, 2)).transpose(1, 2)`` up to float rounding
    (about 1e-7 relative), but the kernel is chosen for the shape at hand: PyTorch's
    default path copies channel-last input to channel-first and back, and several of the
    shapes used here fall on slow oneDNN or reference kernels (timings in
    ``docs/performance.md``). A module that is not a convolution (a fast mode may swap
    a kernel-1 convolution for a quantized linear layer) is applied to ``x`` directly.

    Parameters
    ----------
    conv
        The convolution (padding 0, dilation 1) or a channel-last replacement.
    x
        Input, shape (B, T, C_in).

    Returns
    -------
    Output, shape (B, T', C_out).
    """
    if isinstance(conv, nn.ConvTranspose1d):
        return _transposed_conv(conv, x)
    if not isinstance(conv, nn.Conv1d):
        return conv(x)
    (k,), (stride,) = conv.kernel_size, conv.stride
    if conv.padding != (0,) or conv.dilation != (1,) or x.shape[1] < k:
        return conv(x.transpose(1, 2)).transpose(1, 2)
    weight, groups = conv.weight, conv.groups
    frames = (x.shape[1] - k) // stride + 1
    if groups == 1 and k == stride and x.shape[1] % k == 0:
        return _patch_linear(x, weight, conv.bias)
    if groups == 1 and k > 1 and frames <= _FEW_FRAMES:
        return _unfold_matmul(x, weight, conv.bias, stride, 1)
    packed = groups > 1 and kernels.packs_convolutions(x, weight)
    if groups == x.shape[2] == weight.shape[0]:
        # Depthwise: oneDNN's channels-last kernel is several times faster, except for
        # long kernels (the causal 512-tap global level) over many frames, unless its
        # weight is packed once (the onednn kernel backend).
        if k <= _LONG_KERNEL or frames <= _FEW_FRAMES or packed:
            return _channels_last_conv(conv, x)
    elif packed:  # grouped (WavLM's positional convolution)
        return _channels_last_conv(conv, x)
    elif groups > 1 and frames <= _FEW_FRAMES:
        return _unfold_matmul(x, weight, conv.bias, stride, groups)
    elif groups == 1 and stride > 1:
        return _channels_last_conv(conv, x)
    return conv(x.transpose(1, 2)).transpose(1, 2)


# Shape thresholds of conv_time, measured with torch 2.13 / oneDNN 3.12 on AVX2.
_FEW_FRAMES = 64
_LONG_KERNEL = 64


def _channels_last_conv(
    conv: nn.Conv1d, x: Tensor, weight: Tensor | None = None
) -> Tensor:
    """``conv`` on channel-last (B, T, C); ``weight`` is its (C_out, C_in, 1, k) view,
    if the caller keeps one ready (e.g. already in oneDNN's layout)."""
    # (B, T, C) seen as (B, C, 1, T) has NHWC strides, so oneDNN runs without reordering
    # the input and writes an NHWC output that is (B, T', C_out) in memory.
    # (On the onednn kernel backend, with the weight packed once.)
    y = kernels.conv2d(x.transpose(1, 2).unsqueeze(2), conv, weight)
    return y.squeeze(2).transpose(1, 2)


def _patch_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Kernel = stride convolution as a matrix product over non-overlapping patches."""
    batch, frames, channels = x.shape
    out_dim, _, k = weight.shape
    if k == 1:
        return kernels.linear(x, weight[:, :, 0], bias, owner=weight)
    patches = x.view(batch, frames // k, k, channels).transpose(2, 3)
    return kernels.linear(
        patches.reshape(batch, frames // k, channels * k),
        weight.view(out_dim, -1),
        bias,
        owner=weight,
    )


def _unfold_matmul(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, groups: int
) -> Tensor:
    """Convolution over few output frames as one (batched) matrix product."""
    batch, _, channels = x.shape
    out_dim, _, k = weight.shape
    windows = x.unfold(1, k, stride)  # (B, T', C_in, k)
    frames = windows.shape[1]
    if groups == 1:
        flat = windows.reshape(batch, frames, channels * k)
        return kernels.linear(flat, weight.view(out_dim, -1), bias, owner=weight)
    per_group = windows.reshape(batch * frames, groups, -1).transpose(0, 1)
    taps = weight.view(groups, out_dim // groups, -1).transpose(1, 2)
    if bias is None:
        y = torch.bmm(per_group, taps)
    else:
        y = torch.baddbmm(bias.view(groups, 1, -1), per_group, taps)
    return y.transpose(0, 1).reshape(batch, frames, out_dim)


def _transposed_conv(conv: nn.ConvTranspose1d, x: Tensor) -> Tensor:
    (k,), (stride,) = conv.kernel_size, conv.stride
    plain = conv.padding == (0,) and conv.output_padding == (0,) and conv.groups == 1
    if not (plain and k == stride and conv.dilation == (1,)):
        return conv(x.transpose(1, 2)).transpose(1, 2)
    # Kernel = stride: every input frame writes its own k output frames, which is a
    # matrix product; the weight (C_in, C_out, k) is read as (C_in, C_out * k).
    batch, frames, _ = x.shape
    weight = conv.weight
    out_dim = weight.shape[1]
    y = kernels.linear(x, weight.view(weight.shape[0], -1).T, owner=weight)
    y = y.view(batch, frames, out_dim, k).transpose(2, 3)
    y = y.reshape(batch, frames * k, out_dim)
    return y if conv.bias is None else y + conv.bias


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
        self.in_proj = Linear(dim, ffn_dim)
        self.out_proj = Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(gelu_temp(self.in_proj(x)))
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
        # For subclasses that override a hook: built alike (deploy.swap.rebuild).
        self.init_kwargs = {
            "chunk_size": chunk_size,
            "dim": dim,
            "ffn_dim": ffn_dim,
            "dropout": dropout,
        }
        self.chunk_size = chunk_size
        self.in_proj = Linear(chunk_size * dim, ffn_dim)
        self.out_proj = Linear(ffn_dim, chunk_size * dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, dim = x.shape
        block = self.chunk_size * dim
        flat = x.reshape(batch, frames * dim)
        h = F.pad(flat, (0, self.padding(frames * dim, block))).view(batch, -1, block)
        h = self.dropout(gelu_temp(self.in_proj(h)))
        h = self.dropout(self.out_proj(h))
        h = h.reshape(batch, -1)[:, : frames * dim]
        return (flat + h).view(batch, frames, dim)

    def padding(self, size: int, block: int) -> int:
        """Zeros appended to the flat input of ``size`` values to cut it into blocks.

        Checkpoint compatibility: the original always pads, adding a whole block of
        zeros when the input already fills whole blocks. Rows computed from padding are
        discarded, so a subclass may leave that block out.
        """
        return block - size % block
