"""The Python client of ``focalcodec serve`` (what ``focalcodec client``, the tests and
the benchmark use).

::

    import asyncio
    from focalcodec.serve.client import stream_audio

    result = asyncio.run(
        stream_audio("ws://127.0.0.1:8000/v1/stream", sig, 16000, direction="resynth")
    )
    result.toks          # (L,) the tokens: those of offline sig_to_toks
    result.fcz           # header + packets: a valid .fcz file
    result.audio         # (m,) decoded audio at result.sample_rate

Audio is sent in pieces of ``piece_seconds``, paced in real time with ``realtime=True``
(a microphone's pace) or as fast as the server takes it. :attr:`StreamResult.latencies`
holds, per block, the seconds from sending the audio that completed the block to
receiving its result (its packet, or its audio when the stream is decoded).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import protocol
from .auth import KEY_PREFIX, SUBPROTOCOL
from .protocol import AUDIO, END, EVENT, HEADER, PACKET, frame
from .sessions import PacketInbox

__all__ = ["StreamResult", "listen", "paced", "stream_audio", "stream_fcz"]


@dataclass
class StreamResult:
    """What a session received.

    Attributes
    ----------
    toks
        Tokens of every packet, (L,) int64.
    fcz
        The HEADER and PACKET payloads concatenated: a ``.fcz`` file (empty when the
        server sent no header).
    audio
        Decoded audio, (m,) float32, at ``sample_rate``.
    sample_rate
        The model's output rate (from the ``ready`` event).
    ready
        The ``ready`` event.
    events
        Every other event, in order.
    latencies
        Per block: seconds from sending its last sample to receiving its result.
    close_code, close_reason
        How the server closed (1000: the stream ended normally).
    """

    toks: np.ndarray
    fcz: bytes
    audio: np.ndarray
    sample_rate: int
    ready: dict[str, Any]
    events: list[dict[str, Any]]
    latencies: list[float]
    close_code: int | None
    close_reason: str

    @property
    def ok(self) -> bool:
        return self.close_code == protocol.CLOSE.NORMAL

    @property
    def error(self) -> str | None:
        """The server's whole error message, when it closed on one."""
        for event in self.events:
            if event["event"] == "error":
                return event["message"]
        return None if self.ok else self.close_reason


@dataclass
class _Collector:
    """Frames received, and the clock of the blocks sent."""

    audio_out: bool
    pieces: list[bytes] = field(default_factory=list)
    toks: list[np.ndarray] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    ready: dict = field(default_factory=dict)
    sent_at: list[float] = field(default_factory=list)  # when block k was complete
    latencies: list[float] = field(default_factory=list)
    inbox: PacketInbox = field(default_factory=PacketInbox)
    format: str = "s16le"
    blocks_in: int = 0
    samples_in: int = 0  # output samples received
    on_frame: Callable[[int, Any], None] | None = None

    def take(self, data: bytes) -> None:
        kind, payload = protocol.parse_frame(data)
        if kind == EVENT:
            event = protocol.parse_event(payload)
            if event["event"] == "ready":
                self.ready = event
            else:
                self.events.append(event)
            self._tell(kind, event)
        elif kind == HEADER:
            self.inbox.header(payload)
            self.pieces.append(payload)
        elif kind == PACKET:
            toks = self.inbox.packet(payload)
            self.pieces.append(payload)
            self.toks.append(toks)
            if not self.audio_out:
                self._results(len(toks) // max(self.ready.get("chunk_tokens", 1), 1))
            self._tell(kind, toks)
        elif kind == AUDIO:
            sig = protocol.pcm_to_samples(payload, self.format)
            self.audio.append(sig)
            self.samples_in += len(sig)
            self._tell(kind, sig)
            if self.audio_out and self.ready:
                per_block = self.ready["chunk_tokens"] * self._output_hop()
                done = self.samples_in // per_block
                self._results(done - len(self.latencies))

    def _output_hop(self) -> int:
        ready = self.ready
        hop = ready["chunk_size"] // ready["chunk_tokens"]
        return hop * ready["sample_rate_output"] // ready["sample_rate_input"]

    def _results(self, count: int) -> None:
        now = time.perf_counter()
        for _ in range(max(count, 0)):
            k = len(self.latencies)
            if k < len(self.sent_at):
                self.latencies.append(now - self.sent_at[k])

    def _tell(self, kind: int, value: Any) -> None:
        if self.on_frame is not None:
            self.on_frame(kind, value)

    def result(self, code: int | None, reason: str) -> StreamResult:
        toks = np.concatenate(self.toks) if self.toks else np.zeros(0, np.int64)
        audio = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        rate = int(self.ready.get("sample_rate_output", 0))
        return StreamResult(
            toks,
            b"".join(self.pieces),
            audio,
            rate,
            self.ready,
            self.events,
            self.latencies,
            code,
            reason,
        )


async def paced(
    samples: np.ndarray, sample_rate: int, piece_seconds: float, realtime: bool
) -> AsyncIterator[np.ndarray]:
    """Pieces of ``samples`` (n,), each yielded at its real-time instant if asked."""
    size = max(1, round(piece_seconds * sample_rate))
    start = time.perf_counter()
    for i in range(0, len(samples), size):
        if realtime:
            wait = start + i / sample_rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        else:
            await asyncio.sleep(0)
        yield samples[i : i + size]


def _connect(url: str, api_key: str | None, origin: str | None, **options: Any):
    from websockets.asyncio.client import connect

    offered = [SUBPROTOCOL] + ([KEY_PREFIX + api_key] if api_key else [])
    return connect(
        url,
        subprotocols=offered,
        origin=origin,
        compression=None,
        proxy=None,
        max_size=None,
        open_timeout=30,
        **options,
    )


async def _session(
    url: str,
    start: dict[str, Any],
    send: Callable[[Any, _Collector], Any],
    collector: _Collector,
    api_key: str | None,
    origin: str | None,
) -> StreamResult:
    """Open, start, run ``send`` beside the receiving loop, and collect the result."""
    from websockets.exceptions import ConnectionClosed

    async with _connect(url, api_key, origin) as ws:
        await ws.send(json.dumps({"version": protocol.PROTOCOL_VERSION, **start}))
        sender = asyncio.ensure_future(send(ws, collector))
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    collector.take(data)
        except ConnectionClosed:
            pass
        finally:
            if not sender.done():
                sender.cancel()
            with_error = sender.done() and not sender.cancelled()
            if with_error and sender.exception() is not None:
                if not isinstance(sender.exception(), ConnectionClosed):
                    raise sender.exception()
        code = ws.close_code
        reason = ws.close_reason or ""
    return collector.result(code, reason)


async def stream_audio(
    url: str,
    samples: np.ndarray | AsyncIterable[np.ndarray],
    sample_rate: int,
    *,
    direction: str = "encode",
    model: str | None = None,
    format: str = "s16le",
    voice: str | None = None,
    entropy: str = "none",
    api_key: str | None = None,
    origin: str | None = None,
    realtime: bool = False,
    piece_seconds: float = 0.02,
    room: bool = False,
    blocks_per_packet: int = 1,
    on_frame: Callable[[int, Any], None] | None = None,
) -> StreamResult:
    """Stream audio to ``/v1/stream`` (or, with ``room=True``, a room's URL as its
    sender) and collect what comes back.

    Parameters
    ----------
    url
        ``ws://host:port/v1/stream`` or ``ws://host:port/v1/rooms/NAME``.
    samples
        Audio (n,) float in [-1, 1], or an async iterable of such pieces (a
        microphone), at ``sample_rate``.
    direction
        ``encode`` (tokens back) or ``resynth`` (tokens and audio back).
    model, format, voice, entropy
        Fields of the start message (``docs/serve.md``).
    api_key, origin
        The server's key (sent as a subprotocol) and an ``Origin`` header to send.
    realtime, piece_seconds
        Pacing of an array: pieces of this length, at their real-time instants.
    blocks_per_packet
        Blocks of tokens per packet the server sends (less framing, more latency).
    on_frame
        Called with (kind, value) for each frame received, as it arrives.
    """
    start: dict[str, Any] = {"format": format, "sample_rate": int(sample_rate)}
    if room:
        start |= {"role": "send", "input": "audio"}
    else:
        start |= {"direction": direction, "entropy": entropy}
        start["blocks_per_packet"] = blocks_per_packet
    if model:
        start["model"] = model
    if voice:
        start["voice"] = voice
    pieces = (
        paced(np.asarray(samples, np.float32), sample_rate, piece_seconds, realtime)
        if isinstance(samples, np.ndarray)
        else samples
    )
    collector = _Collector(audio_out=direction == "resynth" and not room, format=format)
    collector.on_frame = on_frame

    async def send(ws, col: _Collector) -> None:
        while not col.ready:  # the ready event names the block size
            await asyncio.sleep(0.001)
        block = col.ready["chunk_size"] * sample_rate / col.ready["sample_rate_input"]
        sent = 0
        async for piece in pieces:
            await ws.send(protocol.audio_frame(piece, format))
            sent += len(piece)
            now = time.perf_counter()
            while (len(col.sent_at) + 1) * block <= sent + 1e-6:
                col.sent_at.append(now)
        await ws.send(frame(END))

    return await _session(url, start, send, collector, api_key, origin)


async def stream_fcz(
    url: str,
    data: bytes,
    *,
    model: str | None = None,
    format: str = "s16le",
    voice: str | None = None,
    api_key: str | None = None,
    origin: str | None = None,
    packets_per_frame: int = 1,
    room: bool = False,
    realtime: bool = False,
) -> StreamResult:
    """Send a ``.fcz`` file's header and packets (direction ``decode``, or a room's
    sender with ``room=True``) and collect the audio.

    With ``realtime=True`` the packets go at the pace of the audio they hold.
    """
    from ..fcz.bitstream import Reader

    header_len = len(Reader(_Bytes(data)).header.to_bytes())
    packets = list(_split_packets(data, header_len))
    start: dict[str, Any] = {"format": format}
    start |= {"role": "send", "input": "packets"} if room else {"direction": "decode"}
    if model:
        start["model"] = model
    if voice:
        start["voice"] = voice
    collector = _Collector(audio_out=not room, format=format)

    async def send(ws, col: _Collector) -> None:
        while not col.ready:
            await asyncio.sleep(0.001)
        await ws.send(frame(HEADER, data[:header_len]))
        begin = time.perf_counter()
        for i in range(0, len(packets), packets_per_frame):
            group = packets[i : i + packets_per_frame]
            if realtime:
                seconds = i * col.ready["chunk_size"] / col.ready["sample_rate_input"]
                await asyncio.sleep(max(begin + seconds - time.perf_counter(), 0))
            await ws.send(frame(PACKET, b"".join(group)))
            col.sent_at.append(time.perf_counter())
        await ws.send(frame(END))

    return await _session(url, start, send, collector, api_key, origin)


async def listen(
    url: str,
    *,
    receive: Sequence[str] = ("packets", "audio"),
    format: str = "s16le",
    api_key: str | None = None,
    origin: str | None = None,
    delay: float = 0.0,
) -> StreamResult:
    """Listen to a room (``ws://host:port/v1/rooms/NAME``) until its sender ends it.

    ``delay`` waits this long before reading each frame: a slow listener, for tests.
    """
    from websockets.exceptions import ConnectionClosed

    start = {"role": "listen", "receive": list(receive), "format": format}
    collector = _Collector(audio_out=False, format=format)
    async with _connect(url, api_key, origin, max_queue=1) as ws:
        await ws.send(json.dumps({"version": protocol.PROTOCOL_VERSION, **start}))
        try:
            while True:
                data = await ws.recv()
                if delay:
                    await asyncio.sleep(delay)
                if isinstance(data, bytes):
                    collector.take(data)
        except ConnectionClosed:
            pass
        code, reason = ws.close_code, ws.close_reason or ""
    return collector.result(code, reason)


class _Bytes:
    """A file object over bytes (for reading a header)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        out = self._data[self._at : end]
        self._at += len(out)
        return out


def _split_packets(data: bytes, start: int) -> list[bytes]:
    """The packets of a ``.fcz`` file, as byte strings (each checked on the way)."""
    from ..fcz.bitstream import Reader

    source = _Bytes(data)
    reader = Reader(source)
    out, at = [], start
    for _ in reader.packets():
        out.append(data[at : source._at])
        at = source._at
    if at < len(data):  # a FINAL packet without tokens
        out.append(data[at:])
    return out
