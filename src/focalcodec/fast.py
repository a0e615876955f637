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
  layers, so an item's result never depends on its batch mates.
* ``int8-decoder`` (CPU): the same for the decompressor and decoder only, so tokens stay
  exact and only decoding is approximate.
* ``bf16`` / ``fp16`` (GPU): the four networks run under ``torch.autocast``; their main
  outputs are returned in float32.
* ``compile`` (any): the four networks go through ``torch.compile`` (no gain measured on
  CPU; see the docs).

Example::

    from focalcodec import FocalCodec
    from focalcodec.fast import optimize

    codec = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz_4k_causal").eval()
    fast = optimize(codec, "int8")  # a new model; ``codec`` is left untouched
    toks = fast.sig_to_toks(sig)

The token signs come straight out of the compressor's last projection, so the int8 modes
keep that small layer (``compressor.out_proj``, 1024 x 13 weights) in float32.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .errors import InputError

__all__ = ["MODES", "optimize"]

MODES = ("exact", "int8", "int8-decoder", "bf16", "fp16", "compile")
# Which networks each int8 mode quantizes.
_INT8_PARTS = {
    "int8": ("encoder", "compressor", "decompressor", "decoder"),
    "int8-decoder": ("decompressor", "decoder"),
}
# Components that run under autocast / torch.compile (the quantizer has no weights).
_NETWORKS = ("encoder", "compressor", "decompressor", "decoder")
# Layers that stay in float32 in the int8 mode (see the module docstring).
_KEEP_FLOAT = ("compressor.out_proj",)


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
    # The WavLM front-end convolutions run over hundreds of frames per call, where
    # int8 matmuls (with the per-call activation quantization) were slower than
    # oneDNN's float32 convolutions; they stay as they are.
    targets = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith(prefixes)
        and name not in _KEEP_FLOAT
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


def _is_qlinear(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


def _convs_to_linear(root: nn.Module) -> None:
    """Replace convolutions that are matrix products in disguise by Linear modules.

    Kernel-1 convolutions become an ``nn.Linear``; dense or grouped convolutions with a
    kernel become :class:`_UnfoldLinear`; depthwise ones stay (they are cheap and have
    no matrix product to quantize). The modules call convolutions through
    :func:`focalcodec.modules.layers.conv_time`, which applies a non-convolution module
    to channel-last input directly.
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
    weight = conv.weight
    if isinstance(conv, nn.ConvTranspose1d):
        plain = conv.groups == 1 and conv.output_padding == (0,)
        if not (plain and conv.kernel_size == (1,) and conv.stride == (1,)):
            return None
        return _linear(weight[:, :, 0].T, conv.bias)  # stored (in, out, k)
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    if depthwise or conv.in_channels == 1:
        return None
    if conv.kernel_size == (1,) and conv.stride == (1,) and conv.groups == 1:
        return _linear(weight[:, :, 0], conv.bias)
    return _UnfoldLinear(conv)


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
            windows = span.unfold(1, self.kernel, self.stride).transpose(2, 3)
            outs = [
                lin(windows[..., g * width : (g + 1) * width].flatten(2))
                for g, lin in enumerate(self.linears)
            ]
            pieces.append(outs[0] if self.groups == 1 else torch.cat(outs, dim=-1))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


class _PerItem(nn.Module):
    """Run a dynamically quantized layer on one batch item at a time.

    Dynamic quantization picks one activation scale per call; running items alone keeps
    an item's result independent of its batch mates (batch invariance).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[0] == 1:
            return self.inner(x)
        return torch.cat([self.inner(item) for item in x.split(1)], dim=0)


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
