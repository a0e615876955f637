"""``FocalCodec.onnx()``: the original package's single ONNX graph of ``forward``.

Offline (``return_state=False``)::

    sig (batch, time) float32 -> toks (batch, latent_time) int64,
                                 codes (batch, latent_time, C) float32,
                                 rec_sig (batch, time * sr_out / sr_in) float32

Streaming (``return_state=True``, causal models), one call per ``chunk_size`` samples::

    sig (batch, chunk_size), input_state.0 ... input_state.K
        -> toks, codes, rec_sig, output_state.0 ... output_state.K

The states are the tensors of :meth:`focalcodec.streaming.steps.StreamState.flatten`, in
that order (``input_state.i`` is the i-th name). All-zero states start a stream: the
graph reads the encoder position (``input_state.0``), which is 0 only before the first
chunk, so the first chunk gives exactly what the PyTorch stream gives. Feed each call's
``output_state.i`` to the next call's ``input_state.i``. ONNX Runtime drops inputs a
graph never reads (the 1-frame placeholders of factor-1 Down/UpScale layers), so build
the feed from ``session.get_inputs()``.

The graphs are made of the pieces of :mod:`focalcodec.deploy.onnx_graphs` (traced
with the TorchScript-based exporter; the Vocos head as a DFT product), whose directory
layout with separate encoder, decoder and step graphs is what ``focalcodec export`` and
:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` use.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..files.atomic import atomic_write
from .onnx_export import OPSET, _dummy_length
from .onnx_graphs import (
    OfflineDecoder,
    OfflineEncoder,
    StreamDecoderStep,
    StreamEncoderStep,
    stream_template,
)

__all__ = ["OfflineForward", "StreamForward", "export_forward"]

_OUTPUTS = ["toks", "codes", "rec_sig"]


class OfflineForward(nn.Module):
    """``forward`` on whole signals: sig (B, N) -> toks, codes, rec_sig (B, N * r)."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.encoder = OfflineEncoder(codec)
        self.decoder = OfflineDecoder(codec)
        self.quantizer = codec.quantizer
        self.rates = (codec.sample_rate_output, codec.sample_rate_input)

    def forward(self, sig: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        toks = self.encoder(sig)
        rec = self.decoder(toks)
        # int(N * sr_out / sr_in) samples: cut, or repeat the last sample. Indices are
        # tensors so that the lengths stay dynamic in the graph.
        out_len = sig.shape[1] * self.rates[0] // self.rates[1]
        last = torch.full((1,), rec.shape[1] - 1, dtype=torch.long)
        index = torch.minimum(torch.arange(out_len), last)
        return toks, self.quantizer.toks_to_codes(toks), rec.index_select(1, index)


class StreamForward(nn.Module):
    """``forward(chunk, *state, return_state=True)`` with flat state tensors."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        template = stream_template(codec)
        self.encoder = StreamEncoderStep(codec, template)
        self.decoder = StreamDecoderStep(codec, template)
        self.quantizer = codec.quantizer
        self.names = [*self.encoder.names, *self.decoder.names]
        self.template = template

    def forward(self, sig: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        split = len(self.encoder.names)
        position = tensors[self.names.index("0.0")]
        first = position == 0
        toks, *front = self.encoder(sig, first, *tensors[:split])
        rec, *back = self.decoder(toks, first, *tensors[split:])
        return (toks, self.quantizer.toks_to_codes(toks), rec, *front, *back)


def export_forward(
    codec: nn.Module,
    f: str | os.PathLike | io.BytesIO,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    return_state: bool = False,
    **kwargs: Any,
) -> None:
    """Write the ONNX graph of ``codec.forward`` to ``f`` (a path or a binary file).

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec`; a CPU copy in eval mode is exported, the model
        itself is left as it is.
    batch_size
        Fixed batch size, or None for a dynamic ``batch`` axis.
    chunk_size
        Fixed input length, or None for a dynamic ``time`` axis. With ``return_state``
        it must be None or the model's ``chunk_size`` (the step length).
    return_state
        Export the streaming step (causal models only) instead of the offline graph.
    **kwargs
        Passed to ``torch.onnx.export`` (default ``opset_version=17``,
        ``dynamo=False``).
    """
    model = copy.deepcopy(codec).cpu().float().eval()
    batch = batch_size or 2  # 2: no traced reshape may take the batch for a constant 1
    if return_state:
        module, args, names, axes = _stream_job(model, batch, chunk_size)
    else:
        module, args, names, axes = _offline_job(model, batch, chunk_size)
    inputs, outputs = names
    if batch_size is not None:
        axes = {
            k: {i: n for i, n in v.items() if n != "batch"} for k, v in axes.items()
        }
    options = {"opset_version": OPSET, "dynamo": False, "do_constant_folding": True}
    options.update(kwargs)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        with _target(f) as target:
            torch.onnx.export(
                module,
                args,
                target,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes={k: v for k, v in axes.items() if v},
                **options,
            )


def _offline_job(model: nn.Module, batch: int, chunk_size: int | None) -> tuple:
    time = chunk_size if chunk_size is not None else _dummy_length(model)
    sig = torch.randn(batch, time) * 0.1
    dynamic = chunk_size is None
    axes = {
        "sig": {0: "batch", **({1: "time"} if dynamic else {})},
        "toks": {0: "batch", **({1: "latent_time"} if dynamic else {})},
        "codes": {0: "batch", **({1: "latent_time"} if dynamic else {})},
        "rec_sig": {0: "batch", **({1: "time_out"} if dynamic else {})},
    }
    return OfflineForward(model), (sig,), (["sig"], _OUTPUTS), axes


def _stream_job(model: nn.Module, batch: int, chunk_size: int | None) -> tuple:
    if not model.causal:
        raise InputError(
            f"return_state=True needs a causal model; {model.model_id or 'this model'} "
            "is not causal, so it has no streaming state (export it without states)"
        )
    if chunk_size not in (None, model.chunk_size):
        raise InputError(
            f"a streaming graph takes chunks of the model's chunk_size "
            f"({model.chunk_size} samples), got chunk_size={chunk_size}"
        )
    module = StreamForward(model)
    flat = module.template.flatten()
    zeros = [
        torch.zeros(
            (batch, *flat[n].shape[1:]) if flat[n].dim() else (), dtype=flat[n].dtype
        )
        for n in module.names
    ]
    sig = torch.randn(batch, model.chunk_size) * 0.1
    count = len(module.names)
    inputs = ["sig", *[f"input_state.{i}" for i in range(count)]]
    outputs = [*_OUTPUTS, *[f"output_state.{i}" for i in range(count)]]
    axes = {name: {0: "batch"} for name in ["sig", *_OUTPUTS]}
    for i, name in enumerate(module.names):
        if flat[name].dim():
            axes[f"input_state.{i}"] = {0: "batch"}
            axes[f"output_state.{i}"] = {0: "batch"}
    return module, (sig, *zeros), (inputs, outputs), axes


@contextlib.contextmanager
def _target(f: Any) -> Iterator[Any]:
    """A binary file for ``f``: a path is written atomically, a file object as given."""
    if isinstance(f, (str, os.PathLike)):
        with atomic_write(f, force=True) as fh:
            yield fh
    else:
        yield f
