"""How a streaming session calls its model, for a FocalCodec or an ONNX export.

:class:`~focalcodec.streaming.session.StreamEncoder` and :class:`~focalcodec.streaming.session.StreamDecoder`
only ever call the model through a :class:`StepRunner`, so the same buffering and tail
logic serves the PyTorch model (the step functions of :mod:`focalcodec.streaming.steps`) and
an :class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` (its step graphs).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..deploy.onnx_runtime import OnnxCodec, OnnxStreamState
from ..errors import StreamingError
from .steps import StreamState, decode_step, encode_step

__all__ = ["StepRunner", "runner_for"]


class StepRunner(NamedTuple):
    """How a stream runs its model: the step calls and where tensors live."""

    encode: Callable  # (sig (B, n), state) -> (toks (B, l), codes (B, l, C), state)
    decode: Callable  # (toks (B, l), state, matching_set, topk) -> (sig (B, m), state)
    new_state: Callable[[], Any]
    device: torch.device
    dtype: torch.dtype
    partial: bool  # steps take partial blocks (pad="none", a last partial token block)
    matching: bool  # decoding can apply kNN voice conversion


def runner_for(codec) -> StepRunner:
    """Steps of :mod:`focalcodec.streaming.steps` for a FocalCodec; an OnnxCodec's own steps.

    The ONNX states are never changed in place (each step returns new arrays), and the
    step graphs have a fixed block length, hence ``partial=False``.
    """
    if isinstance(codec, OnnxCodec):
        if not {"stream_encoder", "stream_decoder"} <= codec.manifest["graphs"].keys():
            raise StreamingError(
                f"the ONNX export {codec.directory} has no streaming graphs (exported "
                "with --no-streaming): export the model again without it to stream"
            )
        cpu = torch.device("cpu")
        return StepRunner(
            codec.encode_step,
            codec.decode_step,
            OnnxStreamState,
            cpu,
            torch.float32,
            partial=False,
            matching=False,
        )
    weight = next(codec.parameters())

    def decode(toks: Tensor, state, matching_set, topk: int):
        codes = codec.quantizer.toks_to_codes(toks)
        return decode_step(codec, codes, state, matching_set, topk)

    return StepRunner(
        partial(encode_step, codec),
        decode,
        StreamState,
        weight.device,
        weight.dtype,
        partial=True,
        matching=True,
    )
