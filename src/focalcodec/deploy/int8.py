"""The int8 fast modes' modules: int8 matrix products, and convolutions as such products.

:func:`quantize_int8` replaces modules of a model (the model is a copy made by
:func:`focalcodec.deploy.fast.optimize`) by the modules of this file, set on their
parents:

* kernel-1 convolutions become ``nn.Linear``; dense or grouped convolutions with a kernel
  become :class:`UnfoldLinear`; depthwise ones stay convolutions behind
  :class:`ShortDepthwise`; WavLM's front-end convolutions keep float32 behind
  :class:`ChannelsLastConv`. The core applies convolutions through
  :func:`focalcodec.modules.layers.conv_time`, which runs any module that is not a
  convolution on channel-last (B, T, C) input directly, so these fit where the
  convolutions were;
* every ``nn.Linear`` (but the few kept in float32) becomes an :class:`Int8Linear`: int8
  weights per output channel, int8 activations quantized per call (torch's dynamic
  quantization kernels, fbgemm on x86), one batch item at a time.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..modules import kernels, layers
from .swap import replace_modules

__all__ = [
    "ChannelsLastConv",
    "Int8Linear",
    "ShortDepthwise",
    "UnfoldLinear",
    "quantize_int8",
]

# Layers that stay in float32, by name and by name ending: the token signs come straight
# out of the compressor's last projection (1024 x 13), and the attention gates' 64 x 8
# projections gain nothing from int8 but the per-call cost of quantizing their input.
KEEP_FLOAT = ("compressor.out_proj",)
KEEP_FLOAT_ENDINGS = (".gru_rel_pos_linear",)


def quantize_int8(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Quantize the networks named in ``prefixes`` (e.g. "decoder") of ``model`` in place.

    Convolutions that are matrix products become Linear layers first; then every Linear
    layer but those of :data:`KEEP_FLOAT` becomes an :class:`Int8Linear`.
    """
    extractor = None
    if "encoder" in prefixes:
        extractor = getattr(model.encoder, "feature_extractor", None)

    def skip(name: str, module: nn.Module) -> bool:
        return not name.startswith(prefixes) or module is extractor

    # The WavLM front-end convolutions run over hundreds of frames per call, where int8
    # matmuls (with the per-call activation quantization) were slower than oneDNN's
    # float32 convolutions; they stay float32, in oneDNN's layout.
    replace_modules(model, lambda name, module: _as_linear(module), skip)
    if extractor is not None:
        replace_modules(extractor, _front_end_conv)

    def build(name: str, module: nn.Module) -> nn.Module | None:
        keep = name in KEEP_FLOAT or name.endswith(KEEP_FLOAT_ENDINGS)
        return None if keep or not isinstance(module, nn.Linear) else Int8Linear(module)

    replace_modules(model, build, skip)


# -- int8 matrix products -------------------------------------------------------------------


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights and dynamically quantized int8 activations.

    The weights are quantized per output channel, symmetric, as torch's
    ``quantize_dynamic`` with ``per_channel_dynamic_qconfig`` does (bit for bit the same
    results); each call quantizes its input with one scale. Batch items run one at a time
    so that an item's result never depends on its batch mates (batch invariance).

    Input (..., in_features) float32, output (..., out_features) float32. The weights
    live in the packed form of the int8 kernel: not in ``state_dict``, not trainable.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad(), warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, but it holds the
            # only dynamic int8 kernels with fast x86 code in torch itself.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization.observer import PerChannelMinMaxObserver

            observer = PerChannelMinMaxObserver(
                dtype=torch.qint8, qscheme=torch.per_channel_symmetric
            )
            weight = linear.weight.detach().float()
            observer(weight)
            scale, zero_point = observer.calculate_qparams()
            qweight = torch.quantize_per_channel(
                weight, scale.double(), zero_point.long(), 0, torch.qint8
            )
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[0] == 1:
            return _int8_linear(x, self.packed)
        return torch.cat([_int8_linear(item, self.packed) for item in x.split(1)])

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _kernel_entry():
    """The int8 kernel's C++ operator, behind the public op overload.

    The public API is the overload ``torch.ops.quantized.linear_dynamic.default``. Each
    call through it first runs Python-side checks for fake TorchBind objects (about 20
    Python-level operations, of use only when tracing with fake tensors, which the int8
    modes do not support), at each of the ~100 int8 products of a streaming step. The
    overload's ``_op`` attribute is the operator without those checks. This is the one
    place where the fast modes reach a private torch attribute; without it (another
    torch release), the public overload is used.
    """
    overload = torch.ops.quantized.linear_dynamic.default
    return getattr(overload, "_op", overload)


_LINEAR_DYNAMIC = _kernel_entry()


def _int8_linear(x: torch.Tensor, packed) -> torch.Tensor:
    """The int8 product of ``x`` (float) with packed weights, float32 out.

    ``reduce_range=True`` (7-bit activations) as in torch's own dynamic Linear (module
    version 4 and later): it avoids overflow in the x86 kernels' 16-bit accumulation.
    """
    if x.dtype != torch.float32:
        return _LINEAR_DYNAMIC(x.float(), packed, True).to(x.dtype)
    return _LINEAR_DYNAMIC(x, packed, True)


# -- convolutions as matrix products -----------------------------------------------------


def _as_linear(conv: nn.Module) -> nn.Module | None:
    """The matrix-product form of ``conv``, or None to keep it."""
    if not isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
        return None
    if conv.padding != (0,) or conv.dilation != (1,):
        return None
    if _is_depthwise(conv) and conv.stride == (1,):
        return ShortDepthwise(conv)
    weight = conv.weight
    if isinstance(conv, nn.ConvTranspose1d):
        plain = conv.groups == 1 and conv.output_padding == (0,)
        if not (plain and conv.kernel_size == (1,) and conv.stride == (1,)):
            return None
        return _linear(weight[:, :, 0].T, conv.bias)  # stored (in, out, k)
    if _is_depthwise(conv) or conv.in_channels == 1:
        return None
    if conv.kernel_size == (1,) and conv.stride == (1,) and conv.groups == 1:
        return _linear(weight[:, :, 0], conv.bias)
    return UnfoldLinear(conv)


def _front_end_conv(name: str, module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.Conv1d) and module.in_channels > 1 and module.groups == 1:
        return ChannelsLastConv(module)
    return None


def _is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv1d) and (
        conv.groups == conv.in_channels == conv.out_channels
    )


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear = linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


class ChannelsLastConv(nn.Module):
    """A dense strided convolution (WavLM's front-end) tuned for streaming steps.

    Over many output frames, :func:`~focalcodec.modules.layers.conv_time`'s oneDNN
    convolution on channels-last input would copy the (C_out, C_in, 1, k) weight to
    channels-last at every call (0.5 ms per streaming step for the second layer): that
    copy is made once (on first use), with the same result bit for bit. Over a few
    frames (the later layers of a step) the unfolded windows meet the weights in one
    product: on the kernel backend of :mod:`focalcodec.modules.kernels` when that is
    not ``plain``, else with the weights on the left, which MKL runs faster than
    ``F.linear``'s order (equal up to float rounding). Kernel-1 or biased convolutions
    go through ``conv_time``.
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv
        self.kept: tuple | None = None  # (weight's identity, channels-last copy)

    @property
    def weight(self) -> torch.Tensor:
        """The convolution's weight as (C_out, C_in, 1, k) in channels-last layout."""
        source = self.conv.weight
        key = (source.data_ptr(), source._version if not source.is_inference() else -1)
        if self.kept is None or self.kept[0] != key:
            with torch.no_grad():
                weight = source.detach().unsqueeze(2)
                weight = weight.contiguous(memory_format=torch.channels_last)
            self.kept = (key, weight)
        return self.kept[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        (k,), (stride,) = conv.kernel_size, conv.stride
        frames = (x.shape[1] - k) // stride + 1
        if stride == 1 or frames < 1 or conv.bias is not None:
            return layers.conv_time(conv, x)
        if frames > layers._FEW_FRAMES:
            if k == stride and x.shape[1] % k == 0:
                return layers.conv_time(conv, x)
            return layers._channels_last_conv(conv, x, self.weight)
        windows = x[:, : (frames - 1) * stride + k].unfold(1, k, stride)
        windows = windows.reshape(-1, conv.in_channels * k)  # (B T', C_in k)
        weight = conv.weight.view(conv.out_channels, -1)
        if kernels.routed(windows, weight):
            y = kernels.linear(windows, weight, owner=conv.weight)
            return y.reshape(x.shape[0], frames, conv.out_channels)
        # Few frames: weights times windows, in this order: with fewer frames than
        # channels, MKL's float32 product is faster with the weight on the left than
        # in ``F.linear``'s order (the streaming step's last front-end layers).
        y = torch.matmul(weight, windows.T)
        return y.T.reshape(x.shape[0], frames, conv.out_channels)


class ShortDepthwise(nn.Module):
    """A stride-1 depthwise convolution that skips oneDNN for few frames.

    Streaming steps convolve a handful of output frames with short kernels, where
    oneDNN's per-call set-up (~0.15 ms) dwarfs the arithmetic; there the windows are
    weighted and summed directly. Long kernels or inputs go through
    :func:`~focalcodec.modules.layers.conv_time` as before. Channel-last (B, T, C) in
    and out, as ``conv_time`` expects of a replacement module.
    """

    frames = 16
    kernel = 64

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv
        # (k, C): taps outermost, so that products and sums run along channels.
        taps = conv.weight.detach()[:, 0].T.contiguous()
        self.register_buffer("taps", taps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k,) = self.conv.kernel_size
        if k > self.kernel or not k <= x.shape[1] < k + self.frames:
            return layers.conv_time(self.conv, x)
        windows = x.unfold(1, k, 1).transpose(2, 3)  # (B, T', k, C)
        y = (windows * self.taps).sum(2)
        return y if self.conv.bias is None else y + self.conv.bias


class UnfoldLinear(nn.Module):
    """A convolution as unfold + one Linear per group, on channel-last input.

    Input (B, T, C_in), output (B, T', C_out), as :func:`conv_time` expects. Long
    inputs go through in blocks of output frames to bound the unfolded copy.
    """

    block = 2048

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        (self.kernel,), (self.stride,) = conv.kernel_size, conv.stride
        self.groups = conv.groups
        out_per_group = conv.out_channels // conv.groups
        bias = conv.bias
        # Windows are read as (k, C_in) so that the copy runs along channels; the
        # weights (C_out, C_in / groups, k) are permuted once to match.
        weight = conv.weight.transpose(1, 2)
        self.linears = nn.ModuleList(
            _linear(
                weight[g * out_per_group : (g + 1) * out_per_group].flatten(1),
                None
                if bias is None
                else bias[g * out_per_group : (g + 1) * out_per_group],
            )
            for g in range(conv.groups)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = (x.shape[1] - self.kernel) // self.stride + 1
        width = x.shape[2] // self.groups
        pieces = []
        for start in range(0, frames, self.block):
            stop = min(start + self.block, frames)
            span = x[:, start * self.stride : (stop - 1) * self.stride + self.kernel]
            windows = span.unfold(1, self.kernel, self.stride)  # (B, T', C_in, k)
            if self.groups == 1:
                pieces.append(self.linears[0](windows.transpose(2, 3).flatten(2)))
                continue
            # One copy puts each group's windows in a contiguous (B, T', k, width)
            # block, instead of one strided copy per group.
            batch, count = windows.shape[:2]
            grouped = windows.reshape(batch, count, self.groups, width, self.kernel)
            grouped = grouped.permute(2, 0, 1, 4, 3).contiguous()
            outs = [lin(grouped[g].flatten(2)) for g, lin in enumerate(self.linears)]
            pieces.append(torch.cat(outs, dim=-1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
