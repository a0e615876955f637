"""What a codec offers: the interface that every backend of FocalCodec implements.

Two classes satisfy :class:`Codec`: :class:`~focalcodec.FocalCodec` (PyTorch) and
:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` (graphs exported to ONNX, run by ONNX
Runtime). Code that only converts audio and tokens (streaming sessions, the ``.fcz``
file API, the CLI verbs) is written against this protocol, so it never asks which
backend it has, and never calls ``nn.Module`` methods (``eval()``, ``to()``,
``parameters()``) that only one backend has.

Shapes use the package's vocabulary: waveforms ``sig`` (B, N), tokens ``toks`` (B, L)
int64, codes (B, L, C) with entries +-1/sqrt(C). Arrays go in and come back as torch
tensors (the ONNX backend also takes and returns numpy arrays).

Rates, all read-only and derived in one place by each backend::

    sample_rate_input   input samples per second (16000 for the released models)
    hop_length          input samples per token (320 at 50 Hz)
    token_rate          sample_rate_input / hop_length
    output_hop_length   output samples per token
    sample_rate_output  token_rate * output_hop_length
    output_length(n)    output samples of n input samples: n * out // in, rounded down
    num_tokens(n)       tokens of n input samples
    chunk_size          input samples per streaming step (1280 = 80 ms)
    chunk_tokens        chunk_size / hop_length, the tokens of one step

Streaming is a pair of step functions over an explicit state, started from
:meth:`Codec.new_stream_state`; :class:`~focalcodec.streaming.session.StreamingSession`
buffers pieces of any length on top of them.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Codec"]


@runtime_checkable
class Codec(Protocol):
    """A speech codec: rates, offline conversion, and streaming steps.

    Attributes
    ----------
    model_id
        Name or path the model was loaded from, or None.
    training
        True while dropout is active (a PyTorch model in training mode); streaming
        refuses such a model, whose output would differ from offline processing.
    supports_partial_steps
        Whether :meth:`encode_step` and :meth:`decode_step` take pieces that are not a
        whole number of chunks (a last partial block).
    supports_knn
        Whether :meth:`decode_step` and :meth:`toks_to_sig` take a ``matching_set`` (kNN
        voice conversion).
    """

    model_id: str | None
    training: bool
    supports_partial_steps: bool
    supports_knn: bool

    # -- rates and sizes ---------------------------------------------------------------

    @property
    def sample_rate_input(self) -> int: ...

    @property
    def sample_rate_output(self) -> int: ...

    @property
    def hop_length(self) -> int:
        """Input samples per token."""

    @property
    def output_hop_length(self) -> int:
        """Output samples per token."""

    @property
    def token_rate(self) -> float:
        """Tokens per second."""

    @property
    def chunk_size(self) -> int:
        """Input samples per streaming step."""

    @property
    def chunk_tokens(self) -> int:
        """Tokens per streaming step."""

    @property
    def min_samples(self) -> int:
        """Shortest input that offline encoding accepts."""

    def output_length(self, num_samples: int) -> int:
        """Output samples that ``num_samples`` input samples decode to (rounded down):
        the one rule, ``focalcodec.inputs.output_length``."""

    def num_tokens(self, num_samples: int) -> int:
        """Tokens that :meth:`sig_to_toks` gives for ``num_samples`` input samples."""

    @property
    def causal(self) -> bool:
        """Whether the model can stream (no output depends on later input)."""

    @property
    def latency(self) -> float | None:
        """Algorithmic latency in ms (causal models), else None."""

    @property
    def codebook_size(self) -> int: ...

    @property
    def bits_per_token(self) -> int: ...

    @property
    def bitrate(self) -> float: ...

    @property
    def device(self) -> torch.device:
        """Where inputs should live (results come back on the same device)."""

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of waveforms going in."""

    @property
    def config(self) -> dict[str, Any]: ...

    def config_hash(self) -> str: ...

    def info(self) -> dict[str, Any]: ...

    # -- offline -----------------------------------------------------------------------

    def sig_to_toks(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) at ``sample_rate_input`` -> tokens (B, L)."""

    def sig_to_codes(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Waveform (B, N) -> codes (B, L, C)."""

    def toks_to_codes(self, toks: Tensor) -> Tensor:
        """Tokens (B, L) -> codes (B, L, C)."""

    def codes_to_toks(self, codes: Tensor) -> Tensor:
        """Codes (B, L, C) -> tokens (B, L)."""

    def toks_to_sig(
        self,
        toks: Tensor,
        matching_set: Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        length: Tensor | None = None,
    ) -> Tensor:
        """Tokens (B, L) -> waveform (B, L * output_hop_length) at
        ``sample_rate_output``, or (B, output_length)."""

    def sig_to_sig(self, sig: Tensor, length: Tensor | None = None) -> Tensor:
        """Resynthesis: (B, N) -> (B, int(N * sample_rate_output / sample_rate_input))."""

    # -- streaming ---------------------------------------------------------------------

    def new_stream_state(self) -> Any:
        """The state of a stream that has not started (causal models only)."""

    def encode_step(self, sig: Tensor, state: Any = None) -> tuple[Tensor, Tensor, Any]:
        """Next samples (B, n) of a stream -> tokens (B, l), codes (B, l, C), state."""

    def decode_step(
        self,
        codes: Tensor,
        state: Any = None,
        matching_set: Tensor | None = None,
        topk: int = 4,
    ) -> tuple[Tensor, Any]:
        """Next codes (B, l, C) or tokens (B, l) of a stream -> samples
        (B, l * output_hop_length), state."""
