"""How a streaming session calls its model: the step functions of a :class:`Codec`.

:class:`~focalcodec.streaming.session.StreamEncoder` and
:class:`~focalcodec.streaming.session.StreamDecoder` only ever call the model through a
:class:`StepRunner`, built from the members of :class:`focalcodec.protocol.Codec`. So the
same buffering and tail logic serves every backend (the PyTorch model, an ONNX export)
without asking which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ..protocol import Codec

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


def runner_for(codec: Codec) -> StepRunner:
    """The step functions, state factory, device and abilities of ``codec``."""
    return StepRunner(
        codec.encode_step,
        codec.decode_step,
        codec.new_stream_state,
        codec.device,
        codec.dtype,
        partial=codec.supports_partial_steps,
        matching=codec.supports_knn,
    )
