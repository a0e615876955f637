"""Continuous batching: many independent streams of one causal model, stepped together.

A server holds many live streams of one model. :class:`StreamBatch` keeps the state of
each (its own rows: streams join and leave at any tick) and advances every stream that
has a whole block ready in one model call per tick::

    batch = StreamBatch(codec, max_streams=64)
    batch.open("alice")                      # any tick
    batch.open("bob", matching_set=voice)    # kNN voice conversion for bob only
    toks = batch.encode({"alice": block_a, "bob": block_b})  # 1 block of chunk_size each
    sig = batch.decode(toks)                 # chunk_tokens tokens each -> audio
    tail = batch.flush("alice", rest)        # the last partial block; closes "alice"

Each stream gets what it gets alone: the tokens of a :class:`StreamingSession` (and of
offline ``sig_to_toks`` after :meth:`StreamBatch.flush` with ``pad="none"``) fed the same
blocks, and the same audio up to float rounding (``tests/streaming/test_batch.py``).
Tokens are bit for bit those of the solo stream because every product gives each row
the numbers it gets alone: so do the oneDNN and plain kernel backends of
:mod:`focalcodec.modules.kernels`; the BLAS backend's few-row products (the weight on
the left) round differently from its products over more rows, so there the streams
agree only to float rounding (a token may then differ, rarely). The same holds for a
fast mode against the same fast mode alone.

A stream ends with :meth:`StreamBatch.flush`: its last samples (less than a block)
run alone, from its own rows, completed as ``pad`` says; the decoder half decodes the
last tokens and cuts the audio to ``codec.output_length`` of all the samples.
:meth:`StreamBatch.state_of` hands out a stream's state as one-row
:class:`~focalcodec.streaming.steps.StreamState` s, to go on with ``codec.encode_step``
/ ``codec.decode_step`` alone.

How. Every weight of the four networks is applied once per tick to all the given
streams (one :meth:`codec.encode_step <focalcodec.FocalCodec.encode_step>` or
``decode_step`` over B rows). The state is held by :mod:`focalcodec.streaming.rows`: a
stream keeps its own contexts and key/value caches whether it is in a tick or not, the
convolutions see each row's own past, and attention runs row by row, each at its own
position over its own keys (streams joined at different ticks have caches of different
fill). kNN conversion runs per group of rows with the same matching set. The int8 fast
mode's products run row by row (its activations are quantized per row, so that a
stream's tokens never depend on the others); everything else is batched there too.

Inputs are checked before any state changes (:meth:`StreamBatch.check_block`,
:meth:`StreamBatch.check_tokens`: a server can check each block as it arrives and end
only the session that sent it). Not thread-safe: one scheduler owns a batch. The model
must be the PyTorch one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import AudioError, InputError, StreamingError
from ..modules import kernels
from ..modules.attention import GatedRelativeAttention
from ..modules.knn import check_matching_set
from ..modules.wavlm import WavLMState
from ..protocol import Codec
from .rows import Rows, SharedCache, SharedContext
from .session import StreamTail
from .steps import StreamState

__all__ = ["StreamBatch"]

_PAD_MODES = ("none", "zeros", "edge")
# Largest sample magnitude a stream may send (full scale is 1).
MAX_AMPLITUDE = 1e3


@dataclass
class _Stream:
    """One open stream: its options and counters (its state is in the shared rows)."""

    encode: bool
    decode: bool
    matching_set: Tensor | None
    topk: int
    position: int = 0  # the encoder's attention position (past frames it sees)
    before: int = 0  # the position before the last block, to redo it
    last_block: Tensor | None = None  # the last block encoded, to redo it at flush
    samples_in: int = 0
    tokens_out: int = 0
    tokens_in: int = 0
    samples_out: int = 0


class StreamBatch:
    """Independent streams of one causal codec, advanced one block per tick together.

    Parameters
    ----------
    codec
        A causal :class:`~focalcodec.FocalCodec` in eval mode, on any device, also in
        a fast mode of :func:`focalcodec.deploy.fast.optimize`.
    max_streams
        Most streams open at once (None: no limit); :meth:`open` beyond it raises
        :class:`~focalcodec.errors.StreamingError` (check :attr:`full` first).
    """

    def __init__(self, codec: Codec, max_streams: int | None = None) -> None:
        if not isinstance(codec, nn.Module) or not codec.causal:
            raise StreamingError(
                f"model {codec.model_id or '(unnamed)'}: batched streaming needs a "
                "causal PyTorch model such as focalcodec_50hz_2k_causal (ONNX step "
                "graphs take one stream per call: use one StreamingSession per stream)"
            )
        if codec.training:
            raise StreamingError(
                "the model is in training mode: call codec.eval() before streaming"
            )
        if max_streams is not None and (
            not isinstance(max_streams, int) or max_streams < 1
        ):
            raise StreamingError(
                f"max_streams must be a positive integer or None, got {max_streams!r}"
            )
        self.codec = codec
        self.max_streams = max_streams
        self.chunk_size = codec.chunk_size
        self.chunk_tokens = codec.chunk_tokens
        self._streams: dict[Hashable, _Stream] = {}
        self._build()

    def _build(self) -> None:
        """The shared state, in the structure of the model's own (one solo step)."""
        codec = self.codec
        sig = torch.zeros(1, self.chunk_size, device=codec.device, dtype=codec.dtype)
        with torch.inference_mode():
            toks, _, enc = codec.encode_step(sig)
            _, dec = codec.decode_step(toks)
        self._enc_rows, self._dec_rows = Rows(), Rows()
        self._enc_shared: list = []
        self._dec_shared: list = []
        self._window = window = codec.config["encoder_config"]["window_size"]
        caches = [SharedCache(self._enc_rows, window) for _ in enc.encoder.kv_caches]
        self._enc_shared.extend(caches)
        encoder = WavLMState(
            torch.zeros(0, dtype=torch.long),
            self._share(enc.encoder.contexts, self._enc_rows, self._enc_shared),
            caches,
        )
        compressor = self._share(enc.compressor, self._enc_rows, self._enc_shared)
        self._enc_state = StreamState(encoder, compressor)
        self._dec_state = StreamState(
            None,
            None,
            self._share(dec.decompressor, self._dec_rows, self._dec_shared),
            self._share(dec.decoder, self._dec_rows, self._dec_shared),
        )
        self._attention = [
            m for m in codec.encoder.modules() if isinstance(m, GatedRelativeAttention)
        ]

    @staticmethod
    def _share(node, rows: Rows, found: list):
        """``node`` (a state part) with a SharedContext for every tensor."""
        if node is None:
            return None
        if torch.is_tensor(node):
            shared = SharedContext(rows)
            found.append(shared)
            return shared
        return [StreamBatch._share(child, rows, found) for child in node]

    # -- streams ---------------------------------------------------------------------

    def open(
        self,
        key: Hashable,
        *,
        encode: bool = True,
        decode: bool = True,
        matching_set: Tensor | None = None,
        topk: int = 4,
    ) -> None:
        """Start a stream named ``key`` (any hashable), at any tick.

        Parameters
        ----------
        key
            The stream's name in the mappings of :meth:`encode` and :meth:`decode`.
        encode, decode
            Which directions the stream uses (audio -> tokens, tokens -> audio).
        matching_set
            Optional (M, D) encoder features of a target voice for this stream's
            decoding (kNN voice conversion); checked once here.
        topk
            Neighbours per frame for the conversion.
        """
        if key in self._streams:
            raise StreamingError(f"stream {key!r} is already open: close it first")
        if self.full:
            raise StreamingError(
                f"{len(self)} streams are open, the most this batch takes "
                f"(max_streams={self.max_streams}): close one or refuse the new one"
            )
        if not (encode or decode):
            raise StreamingError(f"stream {key!r}: open it to encode, decode or both")
        if matching_set is not None:
            if not decode:
                raise StreamingError(
                    f"stream {key!r}: a matching set converts decoded voices; open the "
                    "stream with decode=True"
                )
            dim = self.codec.config["decompressor_config"]["output_dim"]
            check_matching_set(matching_set, dim, topk)
            matching_set = matching_set.to(self.codec.device, self.codec.dtype)
        self._streams[key] = _Stream(encode, decode, matching_set, topk)

    def close(self, key: Hashable) -> None:
        """Drop the stream ``key`` and its state, at any tick (unknown keys: no-op)."""
        if self._streams.pop(key, None) is not None:
            for shared in (*self._enc_shared, *self._dec_shared):
                shared.drop(key)

    @property
    def keys(self) -> list[Hashable]:
        """The open streams, in the order they were opened."""
        return list(self._streams)

    @property
    def full(self) -> bool:
        """Whether :meth:`open` would be refused for lack of room."""
        return self.max_streams is not None and len(self) >= self.max_streams

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, key: object) -> bool:
        return key in self._streams

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._streams))

    def counts(self, key: Hashable) -> dict[str, int]:
        """``samples_in``, ``tokens_out``, ``tokens_in``, ``samples_out`` of ``key``."""
        s = self._stream(key)
        return {
            "samples_in": s.samples_in,
            "tokens_out": s.tokens_out,
            "tokens_in": s.tokens_in,
            "samples_out": s.samples_out,
        }

    # -- the steps -------------------------------------------------------------------

    def encode(self, blocks: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Encode one block per stream: all given streams in one step.

        Parameters
        ----------
        blocks
            Stream key -> its next ``chunk_size`` samples, shape (chunk_size,), float
            (tensor or numpy array). Streams left out keep their state untouched.
            A block that fails the checks of :meth:`check_block` refuses the whole
            call, before any state changes (the error names its stream).

        Returns
        -------
        Stream key -> its tokens of that block, shape (chunk_tokens,) int64, on the CPU.
        """
        items = [(key, self.check_block(key, sig)) for key, sig in blocks.items()]
        if not items:
            return {}
        keys = [key for key, _ in items]
        toks = self._encode_rows(keys, torch.stack([sig for _, sig in items]))
        for key, sig in items:
            s = self._streams[key]
            s.last_block = sig
            s.samples_in += sig.shape[0]
            s.tokens_out += toks.shape[1]
        return {key: toks[i] for i, key in enumerate(keys)}

    def decode(self, toks: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Decode one block of tokens per stream: all given streams in one step.

        Parameters
        ----------
        toks
            Stream key -> its next ``chunk_tokens`` tokens, shape (chunk_tokens,),
            integers in [0, codebook_size). Streams left out keep their state.

        Returns
        -------
        Stream key -> its audio, shape (chunk_tokens * output_hop_length,) float32,
        on the CPU.
        """
        items = [(key, self._tokens(key, t)) for key, t in toks.items()]
        if not items:
            return {}
        keys = [key for key, _ in items]
        sig = self._decode_rows(keys, torch.stack([t for _, t in items]))
        for key, t in items:
            s = self._streams[key]
            s.tokens_in += t.shape[0]
            s.samples_out += sig.shape[1]
        return {key: sig[i] for i, key in enumerate(keys)}

    @staticmethod
    def _packed(streams: int) -> contextlib.AbstractContextManager:
        """Several streams make products of a few rows each: let them all use packed
        weights (:func:`focalcodec.modules.kernels.packed_up_to`), in this thread."""
        if streams < 2:
            return contextlib.nullcontext()
        return kernels.packed_up_to(kernels.MAX_PACKED_ROWS)

    def _encode_rows(self, keys: list[Hashable], sig: Tensor) -> Tensor:
        """One encoder step over the streams ``keys``, row by row of ``sig`` (B, n)."""
        streams = [self._streams[key] for key in keys]
        self._enc_rows.keys = keys
        positions = torch.tensor([s.position for s in streams], dtype=torch.long)
        encoder = self._enc_state.encoder._replace(position=positions)
        state = StreamState(encoder, self._enc_state.compressor)
        with torch.inference_mode(), self._packed(len(keys)):
            toks, _, new = self.codec.encode_step(sig.to(self.codec.device), state)
        for s, position in zip(streams, new.encoder.position.tolist()):
            s.before, s.position = s.position, position
        return toks.cpu()

    def _decode_rows(self, keys: list[Hashable], toks: Tensor) -> Tensor:
        """One decoder step over the streams ``keys``, row by row of ``toks`` (B, l)."""
        streams = [self._streams[key] for key in keys]
        self._dec_rows.keys = keys
        sets = [s.matching_set for s in streams]
        if all(bank is None for bank in sets):
            sets = None
        with torch.inference_mode(), self._packed(len(keys)):
            sig, _ = self.codec.decode_step(
                toks.to(self.codec.device),
                self._dec_state,
                sets,
                [s.topk for s in streams],
            )
        return sig.float().cpu()

    # -- the end of a stream ---------------------------------------------------------

    def flush(
        self,
        key: Hashable,
        sig: Tensor | np.ndarray | None = None,
        toks: Tensor | np.ndarray | None = None,
        *,
        pad: str = "none",
    ) -> StreamTail:
        """End the stream ``key``: its last partial block, alone; then close it.

        As :meth:`StreamingSession.flush`: ``sig`` holds the encoder's last samples
        (at most ``chunk_size``, possibly none), completed as ``pad`` says ("none":
        exactly the last tokens of offline ``sig_to_toks`` of the whole stream). The
        decoder then decodes ``toks`` (its last tokens, at most a block) or, when
        it was fed exactly the encoder's tokens and ``toks`` is None, the encoder's
        last tokens, cut so that the whole stream gives
        ``codec.output_length(samples_in)`` samples.

        Returns
        -------
        :class:`StreamTail` of 1-D tensors on the CPU: the last tokens (l,) (empty for
        a decode-only stream) and the last samples (m,) (empty for encode-only).
        """
        if pad not in _PAD_MODES:
            raise StreamingError(f"pad must be one of {_PAD_MODES}, got {pad!r}")
        s = self._stream(key)
        if sig is not None and not s.encode:
            raise StreamingError(f"stream {key!r} was opened with encode=False")
        if toks is not None and not s.decode:
            raise StreamingError(f"stream {key!r} was opened with decode=False")
        # Everything is checked before any state changes.
        rest = self._samples(key, sig, partial=True) if s.encode else None
        given = None if toks is None else self._tokens(key, toks, partial=True)
        tail_toks = torch.zeros(0, dtype=torch.long)
        length = None
        if rest is not None:
            follows = s.decode and given is None and s.tokens_in == s.tokens_out
            tail_toks = self._encode_tail(key, s, rest, pad)
            if follows:
                given, length = tail_toks, self.codec.output_length(s.samples_in)
        out = torch.zeros(0)
        if s.decode:
            if given is None:
                given = torch.zeros(0, dtype=torch.long)
            out = self._decode_tail(key, s, given, length)
        self.close(key)
        return StreamTail(tail_toks, out)

    def _encode_tail(self, key: Hashable, s: _Stream, rest: Tensor, pad: str) -> Tensor:
        """The last tokens (l,) of a stream from its last ``rest`` samples."""
        if rest.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        missing = self.chunk_size - rest.shape[0]
        skip = 0
        if pad == "zeros":
            block = F.pad(rest, (0, missing))
        elif pad == "edge":
            block = torch.cat([rest, rest[-1:].expand(missing)])
        elif s.last_block is None:
            block = rest
        else:
            # As StreamEncoder: offline, the frames of the tail see a full window of
            # past frames; so the last block is redone, with the tail, from the state
            # before it.
            for shared in self._enc_shared:
                shared.rewind(key)
            s.position = s.before
            block, skip = torch.cat([s.last_block, rest]), self.chunk_tokens
        toks = self._encode_rows([key], block[None])
        s.samples_in += rest.shape[0]
        s.tokens_out += toks.shape[1] - skip
        return toks[0, skip:]

    def _decode_tail(
        self, key: Hashable, s: _Stream, toks: Tensor, length: int | None
    ) -> Tensor:
        """The last samples (m,) of a stream from its last ``toks`` (l,)."""
        sig = torch.zeros(1, 0)
        if toks.shape[0]:
            sig = self._decode_rows([key], toks[None])
        if length is not None:
            want = max(length - s.samples_out, 0)
            if sig.shape[1] >= want:
                sig = sig[:, :want]
            elif sig.shape[1]:
                sig = F.pad(sig[:, None], (0, want - sig.shape[1]), mode="replicate")
                sig = sig[:, 0]
            else:
                sig = sig.new_zeros(1, want)
        s.tokens_in += toks.shape[0]
        s.samples_out += sig.shape[1]
        return sig[0]

    def state_of(self, key: Hashable) -> tuple[StreamState, StreamState]:
        """The states of stream ``key`` as one row: (encoder half, decoder half).

        Copies, as :class:`~focalcodec.streaming.steps.StreamState` of batch size 1
        for ``codec.encode_step`` (the first) and ``codec.decode_step`` (the second):
        to go on with the stream alone, with the same results.
        """
        s = self._stream(key)
        enc = StreamState()
        if s.last_block is not None:
            caches = []
            for module, cache in zip(self._attention, self._enc_state.encoder[2]):
                keys, values = cache.past(key, s.position)
                caches.append(module.cache_with(keys, values, self._window))
            encoder = WavLMState(
                torch.tensor(s.position, dtype=torch.long),
                _export(self._enc_state.encoder.contexts, key),
                caches,
            )
            enc = StreamState(encoder, _export(self._enc_state.compressor, key))
        dec = StreamState(
            None,
            None,
            _export(self._dec_state.decompressor, key),
            _export(self._dec_state.decoder, key),
        )
        if s.tokens_in == 0:
            dec = StreamState()
        return enc, dec

    # -- checks ----------------------------------------------------------------------

    def _stream(self, key: Hashable) -> _Stream:
        s = self._streams.get(key)
        if s is None:
            raise StreamingError(f"no open stream {key!r}: open it first")
        return s

    def check_block(self, key: Hashable, sig: Tensor | np.ndarray) -> Tensor:
        """The checks of :meth:`encode` for one block of stream ``key``: the block as
        a (chunk_size,) tensor on the CPU, or :class:`~focalcodec.errors.AudioError`
        (or :class:`~focalcodec.errors.StreamingError`) naming the stream.

        A server may check each block as it arrives, and end only that session.
        """
        if not self._stream(key).encode:
            raise StreamingError(f"stream {key!r} was opened with encode=False")
        return self._samples(key, sig, partial=False)

    def check_tokens(self, key: Hashable, toks: Tensor | np.ndarray) -> Tensor:
        """The checks of :meth:`decode` for one block of tokens of stream ``key``:
        (chunk_tokens,) int64 on the CPU, or :class:`~focalcodec.errors.InputError`
        (or :class:`~focalcodec.errors.StreamingError`) naming the stream."""
        return self._tokens(key, toks)

    def _samples(self, key: Hashable, sig, partial: bool) -> Tensor:
        """``sig`` as a checked (n,) tensor in the model's dtype, on the CPU."""
        if sig is None:
            sig = torch.zeros(0)
        if isinstance(sig, np.ndarray):
            sig = torch.from_numpy(sig)
        if not torch.is_tensor(sig) or not sig.is_floating_point() or sig.dim() != 1:
            raise AudioError(
                f"stream {key!r}: audio must be a 1-D float tensor or array in [-1, 1]"
            )
        n = sig.shape[0]
        if (partial and n > self.chunk_size) or (not partial and n != self.chunk_size):
            want = f"at most {self.chunk_size}" if partial else f"{self.chunk_size}"
            raise AudioError(f"stream {key!r}: got {n} samples, expected {want}")
        if not bool(torch.isfinite(sig).all()):
            raise AudioError(f"stream {key!r}: audio contains NaN or infinite samples")
        # A sample far beyond full scale overflows the networks into NaN, which a step
        # refuses only after every row's state has moved on: refused here instead,
        # for this stream alone.
        peak = float(sig.abs().max()) if n else 0.0
        if peak > MAX_AMPLITUDE:
            raise AudioError(
                f"stream {key!r}: audio must lie in [-1, 1], got a sample of {peak:.4g}"
                " (for int16 PCM divide by 32768)"
            )
        return sig.detach().to("cpu", self.codec.dtype)

    def _tokens(self, key: Hashable, toks, partial: bool = False) -> Tensor:
        """``toks`` as a checked (l,) int64 tensor on the CPU."""
        s = self._stream(key)
        if not s.decode:
            raise StreamingError(f"stream {key!r} was opened with decode=False")
        if isinstance(toks, np.ndarray):
            toks = torch.from_numpy(toks)
        if not torch.is_tensor(toks) or toks.is_floating_point() or toks.dim() != 1:
            raise InputError(f"stream {key!r}: tokens must be a 1-D integer tensor")
        n, block = toks.shape[0], self.chunk_tokens
        if (partial and n > block) or (not partial and n != block):
            want = f"at most {block}" if partial else f"{block}"
            raise InputError(f"stream {key!r}: got {n} tokens, expected {want}")
        toks = toks.to("cpu", torch.long)
        size = self.codec.codebook_size
        if n and (toks.min() < 0 or toks.max() >= size):
            raise InputError(f"stream {key!r}: tokens must lie in [0, {size})")
        return toks


def _export(node, key: Hashable):
    """``node`` (a shared state part) as one stream's own state: copies or None."""
    if node is None:
        return None
    if isinstance(node, SharedContext):
        return node.context(key)
    return [_export(child, key) for child in node]
