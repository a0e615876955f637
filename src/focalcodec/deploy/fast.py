"""Opt-in fast modes: trade bit-exactness for speed.

The default model is exact (golden parity with the reference implementation). The modes
here return a model with the same API whose outputs are close but not identical; each
mode's measured speed and agreement with the exact model (identical tokens, SNR of the
decoded audio) are in ``docs/performance.md``.

Modes (``device`` is where the mode makes sense):

* ``exact`` (any): nothing changes; the model is returned in eval mode.
* ``int8`` (CPU): Linear layers, and the convolutions that are matrix products in
  disguise (all but the depthwise ones and the WavLM front-end), get int8 weights per
  output channel and dynamically quantized int8 activations (``torch.ao`` dynamic
  quantization, fbgemm/x86 kernels). Batch items run one at a time through quantized
  layers, so an item's result never depends on its batch mates. For streaming steps,
  the causal contexts and key/value caches grow in place in append-only buffers
  instead of being copied whole at every step (the values are the same; the states
  are not interchangeable with the exact model's), short depthwise convolutions
  over a step's few frames skip oneDNN, and a few more per-step costs go (attention
  gates folded to 2 outputs per head, the step's position bias remembered, no
  discarded padding block in the refiner).
* ``int8-decoder`` (CPU): the same for the decompressor and decoder only, so tokens stay
  exact and only decoding is approximate.
* ``bf16`` / ``fp16`` (GPU): the four networks run under ``torch.autocast``; their main
  outputs are returned in float32.
* ``compile`` (any): the four networks go through ``torch.compile`` (no gain measured on
  CPU; see the docs).

Example::

    from focalcodec import FocalCodec
    from focalcodec.deploy.fast import optimize

    codec = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz_4k_causal").eval()
    fast = optimize(codec, "int8")  # a new model; ``codec`` is left untouched
    toks = fast.sig_to_toks(sig)

A fast model is for inference only: some layers keep weights in derived forms (int8,
channel-last or transposed copies, folded projections), so changes to its weights are
not seen everywhere. Train or edit the exact model and call :func:`optimize` again.

The token signs come straight out of the compressor's last projection, so the int8 modes
keep that small layer (``compressor.out_proj``, 1024 x 13 weights) in float32, as well as
the attention gates' tiny projections.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..errors import InputError

__all__ = ["MODES", "optimize"]

MODES = ("exact", "int8", "int8-decoder", "bf16", "fp16", "compile")
# Which networks each int8 mode quantizes.
_INT8_PARTS = {
    "int8": ("encoder", "compressor", "decompressor", "decoder"),
    "int8-decoder": ("decompressor", "decoder"),
}
# Components that run under autocast / torch.compile (the quantizer has no weights).
_NETWORKS = ("encoder", "compressor", "decompressor", "decoder")
# Layers that stay in float32 in the int8 mode (see the module docstring), by name and
# by name ending: the attention gates' 64 x 8 projections gain nothing from int8 but
# the per-call cost of quantizing their input.
_KEEP_FLOAT = ("compressor.out_proj",)
_KEEP_FLOAT_ENDINGS = (".gru_rel_pos_linear",)


def optimize(
    codec: nn.Module,
    mode: str = "int8",
    device: str | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Return ``codec`` prepared for a fast mode (see the module docstring).

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec`.
    mode
        One of :data:`MODES`.
    device
        Where the model will run ("cpu", "cuda", "cuda:1", ...); default: where its
        weights are. The model is moved there.
    inplace
        Modify ``codec`` itself instead of a copy (saves memory for large models).

    Returns
    -------
    The prepared model, in eval mode, with the same methods as ``codec``.
    """
    if mode not in MODES:
        raise InputError(
            f"unknown fast mode {mode!r}; choose one of {', '.join(MODES)}"
        )
    weight = next(codec.parameters())
    device = torch.device(device) if device is not None else weight.device
    _check_device(mode, device)
    model = codec if inplace else copy.deepcopy(codec)
    model = model.to(device).eval()
    if mode in _INT8_PARTS:
        _quantize_int8(model, _INT8_PARTS[mode])
        _prepare_streaming(model, _INT8_PARTS[mode])
    elif mode in ("bf16", "fp16"):
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        for name in _NETWORKS:
            module = getattr(model, name)
            module.forward = _AutocastForward(module, device.type, dtype)
    elif mode == "compile":
        for name in _NETWORKS:
            module = getattr(model, name)
            module.forward = torch.compile(module.forward, dynamic=True)
    model.fast_mode = mode
    return model


def _check_device(mode: str, device: torch.device) -> None:
    if mode in _INT8_PARTS and device.type != "cpu":
        raise InputError(
            f"fast mode {mode!r} runs on CPU only, not {device}; use 'bf16' or 'fp16' on "
            "a GPU"
        )
    if mode in ("bf16", "fp16") and device.type == "cpu":
        raise InputError(
            f"fast mode {mode!r} needs a GPU (CPUs without native {mode} are slower "
            "than float32); use 'int8' on CPU"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available")


# -- int8 ---------------------------------------------------------------------------------


def _quantize_int8(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Quantize the Linear layers (and convolutions, as matmuls) under ``prefixes``."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    for prefix in prefixes:
        _convs_to_linear(getattr(model, prefix))
    if "encoder" in prefixes:
        _prepare_front_end(model.encoder)
    # The WavLM front-end convolutions run over hundreds of frames per call, where
    # int8 matmuls (with the per-call activation quantization) were slower than
    # oneDNN's float32 convolutions; they stay as they are.
    targets = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith(prefixes)
        and name not in _KEEP_FLOAT
        and not name.endswith(_KEEP_FLOAT_ENDINGS)
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but it is the only
        # dynamic int8 path with fast x86 kernels in torch itself.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, targets, dtype=torch.qint8, inplace=True)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                type(child).__name__ == "Linear"
                and child is not None
                and _is_qlinear(child)
            ):
                setattr(parent, name, _PerItem(child))


def _prepare_streaming(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Leaner streaming steps: contexts and key/value caches grow in place (see
    ``append_time``), the refiner skips its discarded padding block, and the relative
    position bias of a step is remembered for the next step with the same positions."""
    from ..modules.attention import (
        GatedRelativeAttention,
        RelativePositionBias,
        TapeCacheAttention,
    )
    from ..modules.focalnet import FocalModulation
    from ..modules.layers import ChunkFeedForward

    for name, module in model.named_modules():
        if not name.startswith(prefixes):
            continue
        if isinstance(module, FocalModulation):
            module.append_contexts = True
        elif isinstance(module, ChunkFeedForward):
            module.pad_full_blocks = False
        elif isinstance(module, RelativePositionBias):
            module.memo = {}
        elif type(module) is GatedRelativeAttention:
            module.__class__ = TapeCacheAttention


def _is_qlinear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


def _convs_to_linear(root: nn.Module) -> None:
    """Replace convolutions that are matrix products in disguise by Linear modules.

    Kernel-1 convolutions become an ``nn.Linear``; dense or grouped convolutions with a
    kernel become :class:`_UnfoldLinear`; depthwise ones stay convolutions (they are
    cheap and have no matrix product to quantize), behind :class:`_ShortDepthwise`.
    The modules call convolutions through :func:`focalcodec.modules.layers.conv_time`,
    which applies a non-convolution module to channel-last input directly.
    """
    skip = set(getattr(root, "feature_extractor", nn.Module()).modules())
    for parent in list(root.modules()):
        if parent in skip:
            continue
        for name, child in list(parent.named_children()):
            linear = _as_linear(child)
            if linear is not None:
                setattr(parent, name, linear)


def _as_linear(conv: nn.Module) -> nn.Module | None:
    if not isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
        return None
    if conv.padding != (0,) or conv.dilation != (1,):
        return None
    if _is_depthwise(conv) and conv.stride == (1,):
        return _ShortDepthwise(conv)
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
    return _UnfoldLinear(conv)


def _prepare_front_end(encoder: nn.Module) -> None:
    """Front-end convolutions keep their weights in oneDNN's input layout."""
    extractor = getattr(encoder, "feature_extractor", None)
    for block in getattr(extractor, "layers", ()):
        conv = block.conv
        if isinstance(conv, nn.Conv1d) and conv.in_channels > 1 and conv.groups == 1:
            block.conv = _ChannelsLastConv(conv)


class _ChannelsLastConv(nn.Module):
    """A dense strided convolution (WavLM's front-end) tuned for streaming steps.

    Over many output frames, :func:`~focalcodec.modules.layers.conv_time` runs it
    through oneDNN on channels-last input, which copies the (C_out, C_in, 1, k) weight
    to channels-last at every call (0.5 ms per streaming step for the second layer):
    here that copy is made once, with the same result bit for bit. Over a few frames
    (the later layers of a step) the weights multiply the unfolded windows from the
    left, which MKL runs faster than ``F.linear``'s order (equal up to float rounding).
    Kernel-1 or biased convolutions go through ``conv_time``.
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv
        weight = conv.weight.detach().unsqueeze(2)
        weight = weight.contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..modules import layers

        conv = self.conv
        (k,), (stride,) = conv.kernel_size, conv.stride
        frames = (x.shape[1] - k) // stride + 1
        if stride == 1 or frames < 1 or conv.bias is not None:
            return layers.conv_time(conv, x)
        if frames > layers._FEW_FRAMES:
            if k == stride and x.shape[1] % k == 0:
                return layers.conv_time(conv, x)
            return layers._channels_last_conv(conv, x, self.weight)
        # Few frames: weights times windows, in this order: with fewer frames than
        # channels, MKL's float32 product is faster with the weight on the left than
        # in ``F.linear``'s order (the streaming step's last front-end layers).
        windows = x[:, : (frames - 1) * stride + k].unfold(1, k, stride)
        windows = windows.reshape(-1, conv.in_channels * k)  # (B T', C_in k)
        y = torch.matmul(conv.weight.view(conv.out_channels, -1), windows.T)
        return y.T.reshape(x.shape[0], frames, conv.out_channels)


def _is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv1d) and (
        conv.groups == conv.in_channels == conv.out_channels
    )


class _ShortDepthwise(nn.Module):
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
        from ..modules.layers import conv_time

        (k,) = self.conv.kernel_size
        if k > self.kernel or not k <= x.shape[1] < k + self.frames:
            return conv_time(self.conv, x)
        windows = x.unfold(1, k, 1).transpose(2, 3)  # (B, T', k, C)
        y = (windows * self.taps).sum(2)
        return y if self.conv.bias is None else y + self.conv.bias


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear = linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


class _UnfoldLinear(nn.Module):
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


class _PerItem(nn.Module):
    """Run a dynamically quantized layer on one batch item at a time.

    Dynamic quantization picks one activation scale per call; running items alone keeps
    an item's result independent of its batch mates (batch invariance). The int8 kernel
    is called directly, as the quantized module does, but without the Python-side
    dispatch checks of ``torch.ops`` overloads (about 1 ms per streaming step).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[0] == 1:
            return self._run(x)
        return torch.cat([self._run(item) for item in x.split(1)], dim=0)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        inner = self.inner
        packed = inner._packed_params
        if packed.dtype != torch.qint8 or x.dtype != torch.float32:
            return inner(x)
        # The module's own rule: checkpoints before version 4 did not reduce the range.
        reduce_range = inner.version is not None and inner.version >= 4
        return _LINEAR_DYNAMIC(x, packed._packed_params, reduce_range)


def _raw_linear_dynamic():
    """The int8 kernel's C++ entry point, without the Python-side checks that
    ``torch.ops`` overloads of TorchBind operators run on every call (only useful to
    tracing with fake tensors, which the int8 modes do not support)."""
    overload = torch.ops.quantized.linear_dynamic.default
    return getattr(overload, "_op", overload)


_LINEAR_DYNAMIC = _raw_linear_dynamic()


# -- autocast -----------------------------------------------------------------------------


class _AutocastForward:
    """``module.forward`` replacement that runs the class's forward under autocast.

    Stored on the instance, so ``copy.deepcopy`` of the model copies it along with (and
    pointing to) the copied module. The first output is cast back to float32, so that
    callers (BSQ signs, audio writers) see the same dtype as in exact mode.
    """

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def __call__(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out, *rest = type(self.module).forward(self.module, *args, **kwargs)
        return (out.float(), *rest)
