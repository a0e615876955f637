"""One live stream on the server: buffering, framing, and its place in the scheduler.

A :class:`LiveStream` is what the scheduler steps: it buffers what a client sends
(PCM resampled to the model's rate, or tokens parsed from ``.fcz`` packets), hands the
scheduler one whole block at a time, and gives what comes back to its :class:`Sink`
(the client's :class:`Connection` for ``/v1/stream``, the room for a room's sender).
At the end it hands over its last partial block, which the scheduler finishes alone
(:meth:`focalcodec.streaming.batch.StreamBatch.flush`): the tokens of a stream are
those of offline ``sig_to_toks`` on all the audio it received.

:class:`Framer` turns tokens into the ``.fcz`` bytes of one receiver (header once,
then one packet per block, each chained to the one before), and :class:`PacketInbox`
does the reverse for the packets a client sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from typing import Any, Protocol

import numpy as np
import soxr

from ..errors import FormatError, InputError
from ..fcz.bitstream import Header, Reader, Writer
from ..fcz.entropy import resolve_entropy
from ..identity import check_model
from ..pipeline.compress import coder_for
from . import protocol

__all__ = ["Connection", "Framer", "LiveStream", "PacketInbox", "Sink"]

# What a WebSocket close reason may hold (RFC 6455: 125 bytes of control payload).
MAX_REASON_BYTES = 120


class Sink(Protocol):
    """Where a stream's results go (a client connection or a room)."""

    def ready(self) -> bool:
        """Whether the sink takes another block of results now."""

    def tokens(self, toks: np.ndarray) -> None:
        """The tokens (l,) of one encoded block."""

    def final(self, num_samples: int, toks: np.ndarray) -> None:
        """The last tokens (l,) and the stream's length in input samples."""

    def audio(self, sig: np.ndarray) -> None:
        """Decoded samples (m,) at the model's output rate."""

    def stats(self, fields: dict[str, Any]) -> None:
        """The latest figures of the scheduler (step time, batch size)."""

    def end(self) -> None:
        """The stream is complete."""

    def fail(self, code: int, reason: str) -> None:
        """The stream failed: close with ``code`` and ``reason``."""


# ---------------------------------------------------------------------------------------
# .fcz bytes out and in
# ---------------------------------------------------------------------------------------


class _Capture:
    """A write-only file object that keeps what was written since the last take()."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class Framer:
    """The ``.fcz`` bytes one receiver gets: the header, then a packet per call.

    Parameters
    ----------
    header
        The plain header of the stream (:func:`focalcodec.identity.header_for`).
    entropy
        ``"none"`` or ``"adaptive"``: packets coded by the adaptive model when smaller.
    """

    def __init__(self, header: Header, entropy: str = "none") -> None:
        model = resolve_entropy(None if entropy == "none" else entropy)
        coder = None
        if model is not None:
            header = dataclasses.replace(
                header, entropy=model.entropy, entropy_hash=model.entropy_hash
            )
            coder = model.coder(header.bits_per_token, header.model_hash)
        self._out = _Capture()
        self._writer = Writer(self._out, header, coder)
        self.header = header
        self.header_bytes = self._out.take()
        self.num_tokens = 0

    def packet(self, toks: np.ndarray) -> bytes:
        """The DATA packet of tokens (l,); empty bytes for no tokens."""
        self._writer.write(np.asarray(toks, dtype=np.int64))
        self.num_tokens = self._writer.num_tokens
        return self._out.take()

    def final(self, num_samples: int, toks: np.ndarray) -> bytes:
        """The FINAL packet: last tokens (l,) and the length in input samples."""
        self._writer.finish(num_samples, np.asarray(toks, dtype=np.int64))
        self.num_tokens = self._writer.num_tokens
        return self._out.take()


class _Fed:
    """A read-only file object over the bytes fed so far (the packets received)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else size
        out = bytes(self._data[:size])
        del self._data[:size]
        return out

    def __len__(self) -> int:
        return len(self._data)


class PacketInbox:
    """The tokens of ``.fcz`` frames a client sends: a HEADER, then PACKETs.

    Every packet is checked as a file reader checks it (its CRC chained to the one
    before, its length, the model of the header): a client's packets are exactly a
    ``.fcz`` file cut into frames, one or more whole packets per frame.
    """

    def __init__(self, codec: Any = None) -> None:
        self.codec = codec
        self._fed = _Fed()
        self._reader: Reader | None = None
        self._packets = None
        self.num_samples: int | None = None

    def header(self, data: bytes) -> Header:
        """Read the header frame; raises :class:`~focalcodec.errors.FormatError`."""
        if self._reader is not None:
            raise FormatError("a second HEADER frame: a stream has one header")
        self._fed.feed(data)
        reader = Reader(self._fed)
        if len(self._fed):
            raise FormatError("the HEADER frame holds bytes after the header")
        if self.codec is not None:  # None: a client, which takes what it is sent
            check_model(reader.header, self.codec, where="the stream's header")
        reader.attach(coder_for(reader.header))  # None for plain packets
        self._reader, self._packets = reader, reader.packets()
        return reader.header

    def packet(self, data: bytes) -> np.ndarray:
        """The tokens (l,) of a PACKET frame (the FINAL one sets ``num_samples``)."""
        if self._reader is None:
            raise FormatError("a PACKET frame before the HEADER frame")
        if self.num_samples is not None:
            raise FormatError("a PACKET frame after the FINAL packet")
        self._fed.feed(data)
        parts = []
        while len(self._fed):
            try:
                parts.append(next(self._packets))
            except StopIteration:
                break
        self.num_samples = self._reader.num_samples
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(parts)


# ---------------------------------------------------------------------------------------
# A client's WebSocket
# ---------------------------------------------------------------------------------------


def short_reason(text: str) -> str:
    """``text`` cut to what a close frame may carry (whole UTF-8 characters)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class Connection:
    """A client's WebSocket: frames sent in order by one task, and exactly one close.

    Parameters
    ----------
    websocket
        The accepted :class:`starlette.websockets.WebSocket`.
    limit
        Frames that may wait to be sent; :meth:`ready` is false at the limit and
        :meth:`offer` drops frames there (a room's slow listener).
    """

    def __init__(self, websocket: Any, limit: int = 64) -> None:
        self.websocket = websocket
        self.limit = limit
        self.on_drain: Any = None  # called when a full queue has room again
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._finish = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the sending task (on the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def ready(self) -> bool:
        """Whether another frame fits in the queue."""
        return self._close is None and len(self._queue) < self.limit

    def send(self, data: bytes) -> None:
        """Queue a frame (past the limit too: callers check :meth:`ready`)."""
        if self._close is None and not self._finish:
            self._queue.append(data)
            self._wake.set()

    def offer(self, data: bytes) -> bool:
        """Queue a frame if it fits; False (nothing queued) when the queue is full."""
        if not self.ready():
            return False
        self.send(data)
        return True

    def finish(self) -> None:
        """Close normally (1000) once every queued frame is sent."""
        self._finish = True
        self._wake.set()

    def fail(self, code: int, reason: str) -> None:
        """Drop the queue, send an ``error`` event with the whole reason, then close
        with ``code`` and the reason cut to fit a close frame."""
        if self._close is not None:
            return
        self._queue.clear()
        self._queue.append(protocol.event_frame("error", code=code, message=reason))
        self._close = (code, short_reason(reason))
        self._wake.set()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def cancel(self) -> None:
        """Stop the sending task (a client that never completes the close)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            await self._send_all()
        except Exception:  # the client went away: there is nobody left to tell
            pass
        finally:
            self.closed.set()

    async def _send_all(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                full = len(self._queue) >= self.limit
                await self.websocket.send_bytes(self._queue.popleft())
                if full and self.on_drain is not None:
                    self.on_drain()
            if self._close is not None or self._finish:
                break
        code, reason = self._close or (protocol.CLOSE.NORMAL, "end of stream")
        self._close = (code, reason)
        self.close_code = code
        await self.websocket.close(code, reason)


class _Fifo:
    """A first-in first-out buffer of 1-D arrays, popped by exact counts."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self._parts: deque[np.ndarray] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, data: np.ndarray) -> None:
        if len(data):
            self._parts.append(np.asarray(data, dtype=self.dtype))
            self._size += len(data)

    def pop(self, count: int) -> np.ndarray:
        """The first ``count`` items (all of them when fewer are held)."""
        out, need = [], min(count, self._size)
        while need:
            part = self._parts.popleft()
            if len(part) > need:
                self._parts.appendleft(part[need:])
                part = part[:need]
            out.append(part)
            need -= len(part)
        got = np.concatenate(out) if out else np.zeros(0, dtype=self.dtype)
        self._size -= len(got)
        return got

    def cut_end(self, count: int) -> None:
        """Drop the last ``count`` items (as many as are held)."""
        rest = self.pop(max(self._size - count, 0))
        self._parts.clear()
        self._size = 0
        self.push(rest)


# ---------------------------------------------------------------------------------------
# A live stream: what the scheduler steps
# ---------------------------------------------------------------------------------------


class LiveStream:
    """One stream's buffers between its client and the scheduler.

    Parameters
    ----------
    key
        The stream's name in the scheduler's batch.
    codec
        The served causal codec.
    start
        The checked start message (format, sample rate).
    sink
        Where results go.
    audio_in
        The client sends audio (encode, resynth); else ``.fcz`` packets (decode).
    audio_out
        The stream is decoded (decode, resynth); else tokens only (encode).
    matching_set, topk
        kNN voice conversion of the decoded audio.
    max_buffered_seconds
        Input held unprocessed before :meth:`has_room` turns false.
    """

    def __init__(
        self,
        key: int,
        codec: Any,
        start: protocol.Start,
        sink: Sink,
        *,
        audio_in: bool,
        audio_out: bool,
        matching_set: Any = None,
        topk: int = 4,
        max_buffered_seconds: float = 10.0,
    ) -> None:
        self.key = key
        self.codec = codec
        self.sink = sink
        self.audio_in, self.audio_out = audio_in, audio_out
        self.matching_set, self.topk = matching_set, topk
        self.format = start.format
        self.model_rate = int(codec.sample_rate_input)
        self.source_rate = int(start.sample_rate or self.model_rate)
        self._resampler = None
        if self.source_rate != self.model_rate:
            self._resampler = soxr.ResampleStream(
                self.source_rate, self.model_rate, 1, dtype="float32", quality="HQ"
            )
        self._audio = _Fifo(np.float32)
        self._toks = _Fifo(np.int64)
        self.inbox = None if audio_in else PacketInbox(codec)
        self._max_samples = int(max_buffered_seconds * self.model_rate)
        self._received = 0  # samples at the client's rate
        self.samples_in = 0  # samples at the model's rate
        self.samples_out = 0
        self.ended = False  # the client sent END
        self.done = False  # the tail went to the scheduler
        self.wake: Any = lambda: None  # set by the scheduler

    # -- from the client -----------------------------------------------------------

    def add_audio(self, payload: bytes) -> None:
        """An AUDIO frame's PCM; raises :class:`~focalcodec.errors.InputError`."""
        self._check_open("AUDIO", self.audio_in)
        samples = protocol.pcm_to_samples(payload, self.format)
        self._received += len(samples)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        self._push_audio(samples)

    def add_header(self, payload: bytes) -> None:
        """A HEADER frame (decode streams); raises :class:`FormatError`."""
        self._check_open("HEADER", not self.audio_in)
        self.inbox.header(payload)

    def add_packet(self, payload: bytes) -> np.ndarray:
        """A PACKET frame (decode streams): its tokens (l,), also queued for
        decoding; raises :class:`FormatError`."""
        self._check_open("PACKET", not self.audio_in)
        toks = self.inbox.packet(payload)
        self._toks.push(toks)
        if len(self._toks) >= self.codec.chunk_tokens:
            self.wake()
        return toks

    def end(self) -> None:
        """The client's END: flush the resampler; the tail follows its last block."""
        self._check_open("END", True)
        if self._resampler is not None:
            self._push_audio(self._resampler.resample_chunk(np.zeros(0, "f4"), True))
            # Hold the count to the one a file reader plans (AudioReader).
            planned = round(self._received * self.model_rate / self.source_rate)
            if self.samples_in > planned:
                self._audio.cut_end(self.samples_in - planned)
            else:
                self._push_audio(np.zeros(planned - self.samples_in, np.float32))
            self.samples_in = planned
        self.ended = True
        self.wake()

    def has_room(self) -> bool:
        """Whether the client may send more now (backpressure on reading)."""
        hop = int(self.codec.hop_length)  # input samples per token
        held = len(self._audio) if self.audio_in else len(self._toks) * hop
        return held < self._max_samples

    def _push_audio(self, samples: np.ndarray) -> None:
        self._audio.push(samples)
        self.samples_in += len(samples)
        if len(self._audio) >= self.codec.chunk_size:
            self.wake()

    def _check_open(self, what: str, allowed: bool) -> None:
        if self.ended:
            raise InputError(f"a frame ({what}) after END")
        if not allowed:
            kind = "audio" if self.audio_in else ".fcz packets"
            raise InputError(f"this stream takes {kind}, not {what} frames")

    # -- to and from the scheduler -------------------------------------------------

    def next_block(self) -> np.ndarray | None:
        """One whole block of audio to encode, when there is one and room for results."""
        size = self.codec.chunk_size
        if self.audio_in and len(self._audio) >= size and self.sink.ready():
            return self._audio.pop(size)
        return None

    def next_tokens(self) -> np.ndarray | None:
        """One whole block of tokens to decode (decode streams)."""
        block = self.codec.chunk_tokens
        if not self.audio_in and len(self._toks) >= block and self.sink.ready():
            return self._toks.pop(block)
        return None

    def tail(self) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """After END and the last whole block: (last samples, last tokens), once."""
        if not self.ended or self.done or not self.sink.ready():
            return None
        if self.audio_in and len(self._audio) < self.codec.chunk_size:
            self.done = True
            return self._audio.pop(len(self._audio)), None
        if not self.audio_in and len(self._toks) < self.codec.chunk_tokens:
            self.done = True
            return None, self._toks.pop(len(self._toks))
        return None

    def pending(self) -> bool:
        """Whether the scheduler has work of this stream (ignoring the sink)."""
        if self.audio_in:
            whole = len(self._audio) >= self.codec.chunk_size
        else:
            whole = len(self._toks) >= self.codec.chunk_tokens
        return whole or (self.ended and not self.done)

    def got_tokens(self, toks: np.ndarray) -> None:
        self.sink.tokens(toks)

    def got_audio(self, sig: np.ndarray) -> None:
        self.samples_out += len(sig)
        self.sink.audio(sig)

    def got_tail(self, toks: np.ndarray, sig: np.ndarray) -> None:
        """The scheduler finished the stream: its last tokens and samples."""
        if self.audio_in:
            self.sink.final(self.samples_in, toks)
        elif self.inbox.num_samples is not None:
            want = self.codec.output_length(self.inbox.num_samples) - self.samples_out
            sig = _fit(sig, max(want, 0))
        if self.audio_out and len(sig):
            self.got_audio(sig)
        self.sink.end()


def _fit(sig: np.ndarray, length: int) -> np.ndarray:
    """``sig`` (m,) cut to ``length`` or extended by repeating its last sample (as the
    offline decoder fits a stream to its recorded length)."""
    if len(sig) >= length:
        return sig[:length]
    fill = sig[-1] if len(sig) else 0.0
    return np.concatenate([sig, np.full(length - len(sig), fill, dtype=np.float32)])
