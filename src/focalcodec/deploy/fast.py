"""Opt-in fast modes: trade bit-exactness for speed.

The default model is exact (golden parity with the reference implementation). The modes
here return a model with the same API whose outputs are close but not identical; each
mode's measured speed and agreement with the exact model (identical tokens, SNR of the
decoded audio) are in ``docs/performance.md``.

Modes (``device`` is where the mode makes sense):

* ``exact`` (any): nothing changes; the copy is returned in eval mode.
* ``int8`` (CPU): Linear layers, and the convolutions that are matrix products in
  disguise (all but the depthwise ones and the WavLM front-end), get int8 weights per
  output channel and dynamically quantized int8 activations
  (:mod:`focalcodec.deploy.int8`). Batch items run one at a time through quantized
  layers, so an item's result never depends on its batch mates. For streaming steps,
  a few modules are replaced by leaner subclasses (:mod:`focalcodec.deploy.lean`):
  causal contexts and key/value caches grow in place instead of being copied whole at
  every step (the values are the same; the states are not interchangeable with the
  exact model's), attention gates are folded to 2 outputs per head, the step's
  position bias is remembered, the refiner skips its discarded padding block.
* ``int8-decoder`` (CPU): the same for the decompressor and decoder only, so tokens stay
  exact and only decoding is approximate.
* ``bf16`` (native bf16: a GPU from Ampere on, a CPU with AVX512-BF16 or AMX) /
  ``fp16`` (GPU): the four networks run under ``torch.autocast``
  (:func:`focalcodec.runtime.autocast`, refused where
  :func:`focalcodec.runtime.check_precision` refuses); their main outputs are returned
  in float32.
* ``compile`` (any): the four networks go through ``torch.compile`` (no gain measured on
  CPU; see the docs).

Every mode builds replacement modules and sets them on their parents in a copy of the
model (:mod:`focalcodec.deploy.swap`; the half-precision and compiled modes put each
network behind a :class:`~focalcodec.deploy.swap.NetworkWrapper`); the exact model is
left as it was, so switching back is using it again. Example::

    from focalcodec import FocalCodec
    from focalcodec.deploy.fast import optimize

    codec = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz_4k_causal").eval()
    fast = optimize(codec, "int8")  # a new model; ``codec`` is left untouched
    toks = fast.sig_to_toks(sig)

A fast model is for inference only: some layers keep weights in derived forms (int8,
channel-last or transposed copies, folded projections), so changes to its weights are
not seen everywhere, and its ``state_dict`` is not a checkpoint. Train or edit the exact
model and call :func:`optimize` again.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..runtime import autocast, check_precision
from .int8 import quantize_int8
from .lean import prepare_streaming
from .swap import NetworkWrapper, wrap

__all__ = ["MODES", "AutocastNetwork", "CompiledNetwork", "optimize"]

MODES = ("exact", "int8", "int8-decoder", "bf16", "fp16", "compile")
# Which networks each int8 mode quantizes.
INT8_PARTS = {
    "int8": ("encoder", "compressor", "decompressor", "decoder"),
    "int8-decoder": ("decompressor", "decoder"),
}
# The half-precision modes, named after their precision (focalcodec.runtime.PRECISIONS).
HALF_MODES = ("bf16", "fp16")


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
        Change ``codec`` itself instead of a copy (saves memory for large models; the
        exact model is then gone).

    Returns
    -------
    The prepared model, in eval mode, with the same methods as ``codec``.
    """
    if mode not in MODES:
        raise InputError(
            f"unknown fast mode {mode!r}; choose one of {', '.join(MODES)}"
        )
    device = torch.device(device) if device is not None else codec.device
    _check_device(mode, device)
    model = codec if inplace else copy.deepcopy(codec)
    model = model.to(device).eval()
    if mode in INT8_PARTS:
        quantize_int8(model, INT8_PARTS[mode])
        prepare_streaming(model, INT8_PARTS[mode])
    elif mode in HALF_MODES:
        wrap(model, lambda _, net: AutocastNetwork(net, device, mode))
    elif mode == "compile":
        wrap(model, lambda _, net: CompiledNetwork(net))
    return model


def _check_device(mode: str, device: torch.device) -> None:
    if mode in INT8_PARTS and device.type != "cpu":
        raise InputError(
            f"fast mode {mode!r} runs on CPU only, not {device}; use 'bf16' or 'fp16' on "
            "a GPU"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available")
    if mode in HALF_MODES:
        # Where the precision is refused, the refusal names this device's fast mode.
        instead = "'int8'" if device.type == "cpu" else "'fp16'"
        check_precision(mode, device, instead)


class AutocastNetwork(NetworkWrapper):
    """Runs ``net`` under autocast to ``precision``; the first output comes back in
    float32.

    Callers (BSQ signs, audio writers) then see the same dtype as in exact mode; the
    streaming state (the other outputs) stays in the autocast dtype.

    Parameters
    ----------
    net
        The network.
    device
        Where it runs (the autocast device type).
    precision
        ``"bf16"`` or ``"fp16"`` (:data:`focalcodec.runtime.PRECISIONS`).
    """

    def __init__(
        self, net: nn.Module, device: torch.device | str, precision: str
    ) -> None:
        super().__init__(net)
        self.device = torch.device(device)
        self.precision = precision

    def run(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.device, self.precision):
            out, *rest = self.net(*args, **kwargs)
        return (out.float(), *rest)


class CompiledNetwork(NetworkWrapper):
    """Runs ``net`` through ``torch.compile`` (dynamic shapes), compiled on first call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        # A compiled function, not a compiled module: a module here would be registered
        # as a second owner of the weights.
        self.compiled = torch.compile(net.forward, dynamic=True)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.compiled(*args, **kwargs)
