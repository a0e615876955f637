"""Opt-in fast modes: trade bit-exactness for speed.

The default model is exact (golden parity with the reference implementation). The modes
here return a model with the same API whose outputs are close but not identical; each
mode's measured speed and agreement with the exact model (identical tokens, SNR of the
decoded audio) are in ``docs/performance.md``.

=========  ======  ========================================================================
mode       device  what changes
=========  ======  ========================================================================
exact      any     nothing (the model is returned as is, in eval mode)
int8       CPU     Linear layers (and kernel-1 convolutions, rewritten as Linear) use int8
                   weights per output channel and dynamically quantized int8 activations
                   (``torch.ao`` dynamic quantization, fbgemm/x86 kernels)
bf16       GPU     the four networks run under ``torch.autocast`` in bfloat16; outputs are
                   returned in float32
fp16       GPU     the same in float16
compile    any     the four networks go through ``torch.compile``
=========  ======  ========================================================================

Example::

    from focalcodec import FocalCodec
    from focalcodec.fast import optimize

    codec = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz_4k_causal").eval()
    fast = optimize(codec, "int8")  # a new model; ``codec`` is left untouched
    toks = fast.sig_to_toks(sig)

The token sign is decided by the compressor's last projection, so every mode keeps that
layer (``compressor.out_proj``, 1024 x 13 weights) in float32.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .errors import InputError

__all__ = ["MODES", "optimize"]

MODES = ("exact", "int8", "bf16", "fp16", "compile")
# Components that run under autocast / torch.compile (the quantizer has no weights).
_NETWORKS = ("encoder", "compressor", "decompressor", "decoder")
# Layers that stay in float32 in the int8 mode (see the module docstring).
_KEEP_FLOAT = ("compressor.out_proj",)


def optimize(
    codec: nn.Module, mode: str = "int8", device: str | None = None, inplace: bool = False
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
        raise InputError(f"unknown fast mode {mode!r}; choose one of {', '.join(MODES)}")
    weight = next(codec.parameters())
    device = torch.device(device) if device is not None else weight.device
    _check_device(mode, device)
    model = codec if inplace else copy.deepcopy(codec)
    model = model.to(device).eval()
    if mode == "int8":
        _quantize_int8(model)
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
    if mode == "int8" and device.type != "cpu":
        raise InputError(
            f"fast mode 'int8' runs on CPU only, not {device}; use 'bf16' or 'fp16' on "
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


def _quantize_int8(model: nn.Module) -> None:
    """Rewrite kernel-1 convolutions as Linear, then quantize every Linear but a few."""
    _pointwise_convs_to_linear(model)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    targets = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in _KEEP_FLOAT
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but it is the only
        # dynamic int8 path with fast x86 kernels in torch itself.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, targets, dtype=torch.qint8, inplace=True)


def _pointwise_convs_to_linear(model: nn.Module) -> None:
    """Swap kernel-1, stride-1 Conv1d / ConvTranspose1d for equivalent nn.Linear.

    The modules call convolutions through :func:`focalcodec.modules.layers.conv_time`,
    which applies a non-convolution module to channel-last input directly.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            linear = _as_linear(child)
            if linear is not None:
                setattr(parent, name, linear)


def _as_linear(conv: nn.Module) -> nn.Linear | None:
    if not isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
        return None
    plain = conv.padding == (0,) and conv.dilation == (1,) and conv.groups == 1
    if not (plain and conv.kernel_size == (1,) and conv.stride == (1,)):
        return None
    weight = conv.weight[:, :, 0]
    if isinstance(conv, nn.ConvTranspose1d):
        if conv.output_padding != (0,):
            return None
        weight = weight.T  # stored (in, out, k)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=conv.bias is not None)
    linear = linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


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
