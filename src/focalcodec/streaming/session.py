"""Streaming sessions: feed audio or tokens of any length, get back what is ready.

A causal model works in blocks of ``codec.chunk_size`` input samples (80 ms for the
released models). The step functions of :mod:`focalcodec.streaming.steps` need exactly such
blocks; the classes here buffer arbitrary pieces, run the steps, and own every bit of
state, so a caller never threads state by hand::

    with codec.streaming(batch_size=1) as stream:
        for piece in pieces:              # any lengths, (B, n) or (n,)
            toks = stream.encode(piece)   # (B, l) tokens that are ready, l may be 0
            out = stream.decode(toks)     # (B, m) audio that is ready
        tail = stream.flush()             # StreamTail(toks, sig): the rest

The tail. Input that does not fill a last block is handled according to ``pad``::

    input   |<----- chunk ----->|<----- chunk ----->|<-- r -->:
    "none"  |                   |<-- redone with the tail -->|     (default)
    "zeros" |                   |                   |<-- r -->:000000000|
    "edge"  |                   |                   |<-- r -->:xxxxxxxxx|  (last sample)

"none" (the default) gives exactly the tokens of offline ``sig_to_toks`` on the same N
samples, for any N: the tail is encoded together with the last full block again, from the
state before that block, and only the tail's tokens are returned. "zeros"/"edge" give
exactly the tokens of offline ``sig_to_toks`` on the input padded to a whole number of
blocks (a whole number of token blocks, which a receiver may prefer). After
:meth:`StreamingSession.flush` the decoded audio totals exactly
``int(N * sample_rate_output / sample_rate_input)`` samples for N input samples, whatever
the padding; with "none" it equals offline ``codec.sig_to_sig`` on the whole input.

The model is any :class:`focalcodec.protocol.Codec`, called through its step functions
only. An :class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` of a causal export works too:
its step graphs take whole blocks only (``supports_partial_steps`` is false), so it needs
``pad="zeros"`` or ``"edge"``, and cannot convert voices (``supports_knn`` is false).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import AudioError, InputError, StreamingError
from ..modules.knn import check_matching_set
from ..protocol import Codec
from .guard import one_thread

__all__ = ["StreamDecoder", "StreamEncoder", "StreamTail", "StreamingSession"]

PadMode = Literal["zeros", "edge", "none"]
_PAD_MODES = ("zeros", "edge", "none")


class StreamTail(NamedTuple):
    """What :meth:`StreamingSession.flush` returns.

    Attributes
    ----------
    toks
        The encoder's last tokens, (B, l).
    sig
        The decoder's last samples, (B, m).
    """

    toks: Tensor
    sig: Tensor


def _check_model(codec: Codec) -> None:
    if not codec.causal:
        raise StreamingError(
            f"model {codec.model_id or '(unnamed)'} is not causal: streaming needs a "
            "causal model such as focalcodec_50hz_2k_causal; for long inputs to a "
            "non-causal model use focalcodec.streaming.longform"
        )
    if codec.training:
        raise StreamingError(
            "the model is in training mode, where dropout would make the stream differ "
            "from offline processing: call codec.eval() before streaming"
        )


def _check_batch(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise StreamingError(
            f"batch_size must be a positive integer, got {batch_size!r}"
        )
    return batch_size


def _rows(x: Tensor, batch_size: int, what: str, error: type = AudioError) -> Tensor:
    """Make ``x`` (B, n); a 1-D piece counts as one row."""
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2:
        raise error(f"{what} must have shape (n,) or (batch, n), got {tuple(x.shape)}")
    if x.shape[0] != batch_size:
        raise StreamingError(
            f"the stream was opened with batch_size={batch_size} but this {what} has "
            f"{x.shape[0]} rows; open one stream per batch size"
        )
    return x


class _Closable(ABC):
    """Closed/flushed bookkeeping shared by the encoder and decoder halves."""

    _name = "stream"
    # dtype of an empty output; None: the model's float dtype (audio).
    _out_dtype: torch.dtype | None = None

    def __init__(self) -> None:
        self.closed = False
        self.flushed = False

    def _check_open(self, call: str) -> None:
        if self.closed:
            raise StreamingError(f"{call}() on a closed {self._name}: open a new one")
        if self.flushed:
            raise StreamingError(
                f"{call}() after flush(): the {self._name} has ended; call reset() to "
                "start a new stream"
            )

    def close(self) -> None:
        """Drop all state; any later call raises :class:`StreamingError`."""
        self.reset()
        self.closed = True

    @abstractmethod
    def reset(self) -> None:
        """Forget everything and start a new stream."""

    def _join(self, parts: list[Tensor]) -> Tensor:
        """Concatenate outputs (B, n_i) along time; (B, 0) when there are none."""
        if parts:
            return torch.cat(parts, 1)
        dtype = self._out_dtype or self._dtype
        return torch.zeros(self.batch_size, 0, dtype=dtype, device=self._device)


class StreamEncoder(_Closable):
    """Audio pieces of any length -> tokens, one block of ``chunk_size`` at a time.

    Parameters
    ----------
    codec
        A causal :class:`~focalcodec.FocalCodec` in eval mode, or an ONNX export of one
        (:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec`; see the module docstring).
    batch_size
        Rows of every piece.
    pad
        How :meth:`flush` treats a last partial block: "none" (exact offline tokens),
        "zeros" or "edge" (see the module docstring).
    chunks_per_step
        Blocks per model call. 1 gives the lowest latency; more blocks per call give
        the same tokens with fewer, larger calls.
    """

    _name = "stream encoder"

    def __init__(
        self,
        codec: Codec,
        batch_size: int = 1,
        pad: PadMode = "none",
        chunks_per_step: int = 1,
    ) -> None:
        super().__init__()
        _check_model(codec)
        if pad not in _PAD_MODES:
            raise StreamingError(f"pad must be one of {_PAD_MODES}, got {pad!r}")
        if not isinstance(chunks_per_step, int) or chunks_per_step < 1:
            raise StreamingError(
                f"chunks_per_step must be a positive integer, got {chunks_per_step!r}"
            )
        if pad == "none" and not codec.supports_partial_steps:
            raise StreamingError(
                "pad='none' encodes a partial last block, which the ONNX step graphs "
                f"(whole blocks of {codec.chunk_size} samples) cannot: use pad='zeros' "
                "or pad='edge'"
            )
        self.codec = codec
        self.batch_size = _check_batch(batch_size)
        self.pad = pad
        self.step_size = chunks_per_step * codec.chunk_size
        self._device, self._dtype = codec.device, codec.dtype
        self.reset()

    def reset(self) -> None:
        """Forget everything and start a new stream (also after :meth:`flush`)."""
        self.state = self.codec.new_stream_state()
        self._buffer = torch.zeros(self.batch_size, 0, dtype=self._dtype)
        # The last step's input and the state before it, to redo it with the tail.
        self._last: tuple[Any, Tensor, int] | None = None
        self.samples_in = 0
        self.tokens_out = 0
        self.flushed = False

    @property
    def pending(self) -> int:
        """Samples received but not encoded yet (less than one step)."""
        return self._buffer.shape[1]

    @property
    def output_length(self) -> int:
        """Samples that decoding this stream should give (``codec.output_length``)."""
        return self.codec.output_length(self.samples_in)

    def encode(
        self, samples: Tensor | np.ndarray, sample_rate: int | None = None
    ) -> Tensor:
        """Add samples (B, n) or (n,) and return the tokens that are ready, (B, l).

        ``sample_rate``, when given, must be the model's input rate: streams are not
        resampled here.
        """
        self._check_open("encode")
        piece = self._as_samples(samples, sample_rate)
        self._buffer = torch.cat([self._buffer, piece.to(self._buffer.device)], 1)
        self.samples_in += piece.shape[1]
        ready = self.pending // self.codec.chunk_size * self.codec.chunk_size
        out = []
        for start in range(0, ready, self.step_size):
            out.append(
                self._step(self._buffer[:, start : min(start + self.step_size, ready)])
            )
        self._buffer = self._buffer[:, ready:]
        return self._join(out)

    def flush(self) -> Tensor:
        """Encode what is left, completed according to ``pad``; returns (B, l) tokens."""
        self._check_open("flush")
        out = []
        tail = self._buffer
        missing = self.codec.chunk_size - tail.shape[1]
        if self.pending and self.pad == "zeros":
            out.append(self._step(F.pad(tail, (0, missing))))
        elif self.pending and self.pad == "edge":
            out.append(
                self._step(torch.cat([tail, tail[:, -1:].expand(-1, missing)], 1))
            )
        elif self.pending:
            out.append(self._redo_with_tail(tail))
        self._buffer = self._buffer[:, :0]
        self._last = None
        self.flushed = True
        return self._join(out)

    def _redo_with_tail(self, tail: Tensor) -> Tensor:
        """Tokens of a partial last block, exactly as offline encoding gives them.

        Offline, the frames of a partial last block attend to a full window of past
        frames; alone in a step they would see one block fewer (the cache keeps
        ``window - block`` frames). So the last step is run again from the state before
        it, together with the tail, and only the new tokens are kept. The earlier step
        mutated that state's key/value caches only in the rows it wrote, which the
        repeat writes again.
        """
        if self._last is None:
            return self._step(tail)
        state, sig, count = self._last
        with torch.inference_mode():
            toks, _, self.state = self.codec.encode_step(
                torch.cat([sig, tail], 1).to(self._device), state
            )
        self.tokens_out += toks.shape[1] - count
        return toks[:, count:]

    def _step(self, sig: Tensor) -> Tensor:
        before = self.state
        with torch.inference_mode():
            toks, _, self.state = self.codec.encode_step(
                sig.to(self._device, self._dtype), self.state
            )
        if self.pad == "none":
            self._last = (before, sig, toks.shape[1])
        self.tokens_out += toks.shape[1]
        return toks

    _out_dtype = torch.long

    def _as_samples(self, samples, sample_rate: int | None) -> Tensor:
        rate = self.codec.sample_rate_input
        if sample_rate is not None and sample_rate != rate:
            raise StreamingError(
                f"the stream gets audio at {sample_rate} Hz but the model needs {rate} Hz:"
                " resample first (focalcodec.files.audio.resample) or open the device at "
                f"{rate} Hz"
            )
        if isinstance(samples, np.ndarray):
            samples = torch.from_numpy(samples)
        if not torch.is_tensor(samples):
            raise AudioError(
                f"audio must be a tensor or numpy array, got {type(samples)}"
            )
        if not samples.is_floating_point():
            raise AudioError(
                f"audio must be floating point in [-1, 1], got {samples.dtype}; for int16 "
                "PCM divide by 32768"
            )
        samples = _rows(samples.detach(), self.batch_size, "audio piece")
        if not torch.isfinite(samples).all():
            raise AudioError("audio piece contains NaN or infinite samples")
        return samples.to(dtype=self._dtype)


class StreamDecoder(_Closable):
    """Tokens in pieces of any length -> audio, one block of tokens at a time.

    A block is the tokens of one ``chunk_size`` of input (4 at 50 Hz, 2 at 25 Hz): the
    decompressor looks ahead within a block, so partial blocks wait for the rest.

    Parameters
    ----------
    codec
        A causal :class:`~focalcodec.FocalCodec` in eval mode, or an ONNX export of one
        (:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec`; see the module docstring).
    batch_size
        Rows of every piece.
    matching_set
        Optional (M, D) encoder features of a target voice: each decoded frame is
        replaced by the mean of its ``topk`` nearest rows (kNN voice conversion).
    topk
        Neighbours per frame.
    chunks_per_step
        Blocks per model call.
    """

    _name = "stream decoder"

    def __init__(
        self,
        codec: Codec,
        batch_size: int = 1,
        matching_set: Tensor | None = None,
        topk: int = 4,
        chunks_per_step: int = 1,
    ) -> None:
        super().__init__()
        _check_model(codec)
        if not isinstance(chunks_per_step, int) or chunks_per_step < 1:
            raise StreamingError(
                f"chunks_per_step must be a positive integer, got {chunks_per_step!r}"
            )
        if matching_set is not None and not codec.supports_knn:
            raise StreamingError(
                "kNN voice conversion (matching_set) needs the PyTorch model: the ONNX "
                "decoder graph maps tokens straight to audio"
            )
        self.codec = codec
        self.batch_size = _check_batch(batch_size)
        self.block = codec.chunk_tokens
        self.step_size = chunks_per_step * self.block
        self._device, self._dtype = codec.device, codec.dtype
        self.topk = topk
        self.matching_set = self._check_matching_set(matching_set)
        self.reset()

    def reset(self) -> None:
        """Forget everything and start a new stream (also after :meth:`flush`)."""
        self.state = self.codec.new_stream_state()
        self._buffer = torch.zeros(self.batch_size, 0, dtype=torch.long)
        self.tokens_in = 0
        self.samples_out = 0
        self.used = False
        self.flushed = False

    @property
    def pending(self) -> int:
        """Tokens received but not decoded yet (less than one block)."""
        return self._buffer.shape[1]

    def decode(self, toks: Tensor | np.ndarray) -> Tensor:
        """Add tokens (B, l) or (l,) and return the audio that is ready, (B, m)."""
        self._check_open("decode")
        toks = self._as_tokens(toks)
        self.used = True
        self._buffer = torch.cat([self._buffer, toks], 1)
        self.tokens_in += toks.shape[1]
        ready = self.pending // self.block * self.block
        out = []
        for start in range(0, ready, self.step_size):
            out.append(
                self._step(self._buffer[:, start : min(start + self.step_size, ready)])
            )
        self._buffer = self._buffer[:, ready:]
        return self._join(out)

    def flush(
        self, toks: Tensor | np.ndarray | None = None, output_length: int | None = None
    ) -> Tensor:
        """Decode the last tokens, including a partial block, and end the stream.

        Parameters
        ----------
        toks
            Optional final tokens (B, l), decoded as if passed to :meth:`decode` first.
        output_length
            Total samples the whole stream should give; the returned tail is cut, or
            extended by repeating its last sample, to reach it. None keeps every decoded
            sample.

        Returns
        -------
        The remaining audio, (B, m).
        """
        self._check_open("flush")
        if toks is not None:
            toks = self._as_tokens(toks)
            self._buffer = torch.cat([self._buffer, toks], 1)
            self.tokens_in += toks.shape[1]
        if self.pending % self.block and not self.codec.supports_partial_steps:
            raise StreamingError(
                f"{self.pending % self.block} tokens are left at flush(), less than a "
                f"block of {self.block}; the ONNX step graphs decode whole blocks only"
            )
        before = self.samples_out
        if output_length is not None and output_length < before:
            raise StreamingError(
                f"output_length={output_length} but {before} samples were already "
                "returned by decode()"
            )
        steps = range(0, self.pending, self.step_size)
        sig = self._join(
            [self._step(self._buffer[:, i : i + self.step_size]) for i in steps]
        )
        self._buffer = self._buffer[:, :0]
        self.flushed = True
        if output_length is not None:
            sig = _fit(sig, output_length - before)
            self.samples_out = output_length
        return sig

    def _step(self, toks: Tensor) -> Tensor:
        with torch.inference_mode():
            sig, self.state = self.codec.decode_step(
                toks.to(self._device), self.state, self.matching_set, self.topk
            )
        self.samples_out += sig.shape[1]
        return sig

    def _as_tokens(self, toks) -> Tensor:
        if isinstance(toks, np.ndarray):
            toks = torch.from_numpy(toks)
        if not torch.is_tensor(toks) or toks.is_floating_point() or toks.is_complex():
            raise InputError(
                "tokens must be an integer tensor or array of shape (B, l)"
            )
        toks = _rows(
            toks.detach().to("cpu", torch.long),
            self.batch_size,
            "token piece",
            InputError,
        )
        size = self.codec.codebook_size
        if toks.numel() and (toks.min() < 0 or toks.max() >= size):
            raise InputError(
                f"tokens must lie in [0, {size}); got values from {int(toks.min())} to "
                f"{int(toks.max())}"
            )
        return toks

    def _check_matching_set(self, matching_set) -> Tensor | None:
        if matching_set is None:
            return None
        dim = self.codec.config["decompressor_config"]["output_dim"]
        # Checked once here (finite values included), not at every step.
        check_matching_set(matching_set, dim, self.topk)
        return matching_set.to(self._device, self._dtype)


def _fit(sig: Tensor, length: int) -> Tensor:
    """Cut (B, m) to ``length`` samples or extend it by repeating its last sample."""
    if sig.shape[1] >= length:
        return sig[:, :length]
    if sig.shape[1] == 0:
        return sig.new_zeros(sig.shape[0], length)
    return F.pad(sig[:, None], (0, length - sig.shape[1]), mode="replicate")[:, 0]


class StreamingSession:
    """An encoder and a decoder stream over one causal model, used as a context manager.

    :meth:`encode` and :meth:`decode` are independent streams (see
    :class:`StreamEncoder` and :class:`StreamDecoder`); :meth:`process` chains them for
    live resynthesis. Several sessions over the same model can run side by side: all
    state lives in the session; a call made while another thread is inside one raises
    :class:`StreamingError` (:func:`~focalcodec.streaming.guard.one_thread`).

    Parameters
    ----------
    codec
        A causal :class:`~focalcodec.FocalCodec` in eval mode, or an ONNX export of one
        (:class:`~focalcodec.deploy.onnx_runtime.OnnxCodec`; see the module docstring).
    batch_size
        Rows of every piece of audio or tokens.
    matching_set, topk
        kNN voice conversion at decoding, see :class:`StreamDecoder`.
    pad
        Completion of the last partial block of audio, see :class:`StreamEncoder`.
    chunks_per_step
        Blocks per model call, for both directions.
    """

    def __init__(
        self,
        codec: Codec,
        batch_size: int = 1,
        *,
        matching_set: Tensor | None = None,
        topk: int = 4,
        pad: PadMode = "none",
        chunks_per_step: int = 1,
    ) -> None:
        self.encoder = StreamEncoder(codec, batch_size, pad, chunks_per_step)
        self.decoder = StreamDecoder(
            codec, batch_size, matching_set, topk, chunks_per_step
        )
        self.codec = codec
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def __enter__(self) -> StreamingSession:
        if self.closed:
            raise StreamingError("cannot enter a closed session: open a new one")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @one_thread
    def encode(
        self, samples: Tensor | np.ndarray, sample_rate: int | None = None
    ) -> Tensor:
        """Audio piece (B, n) or (n,) -> tokens that are ready, (B, l)."""
        return self.encoder.encode(samples, sample_rate)

    @one_thread
    def decode(self, toks: Tensor | np.ndarray) -> Tensor:
        """Token piece (B, l) or (l,) -> audio that is ready, (B, m)."""
        return self.decoder.decode(toks)

    @one_thread
    def process(
        self, samples: Tensor | np.ndarray, sample_rate: int | None = None
    ) -> Tensor:
        """Resynthesis: audio piece (B, n) -> reconstructed audio that is ready, (B, m)."""
        return self.decoder.decode(self.encoder.encode(samples, sample_rate))

    @one_thread
    def flush(self) -> StreamTail:
        """End both streams and return what they still held.

        When the decoder has been given exactly the tokens the encoder returned (the
        ``decode(encode(x))`` pattern, or :meth:`process`), the encoder's last tokens are
        decoded too and the audio is cut so that the whole stream gives
        ``int(N * sample_rate_output / sample_rate_input)`` samples for N input samples.
        Otherwise each half is flushed on its own.
        """
        follows = (
            self.decoder.used and self.decoder.tokens_in == self.encoder.tokens_out
        )
        toks = self.encoder.flush()
        if follows:
            sig = self.decoder.flush(toks, self.encoder.output_length)
        else:
            sig = self.decoder.flush()
        return StreamTail(toks, sig)

    @one_thread
    def reset(self) -> None:
        """Start new streams in both directions."""
        for half in (self.encoder, self.decoder):
            if half.closed:
                raise StreamingError("reset() on a closed session: open a new one")
            half.reset()

    @one_thread
    def close(self) -> None:
        """Drop all state; later calls raise :class:`StreamingError`."""
        self.encoder.close()
        self.decoder.close()

    @property
    def closed(self) -> bool:
        return self.encoder.closed
