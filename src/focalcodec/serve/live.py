"""The WebSocket endpoints: ``/v1/stream`` (one client's stream) and ``/v1/rooms/{name}``.

Every socket goes the same way: Origin check (refused before the handshake completes),
admission (over ``max_sessions``: close 1013), the start message (its API key, model,
voice), then frames until END or a close. Whatever a client sends, only its own session
ends: a malformed frame closes it with a code and a reason (``docs/serve.md``), and the
server, the scheduler and every other session go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, NamedTuple

import numpy as np
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from ..errors import FocalCodecError
from ..identity import header_for
from .auth import key_matches, origin_allowed, pick_subprotocol, subprotocol_key
from .protocol import (
    AUDIO,
    CLOSE,
    END,
    EVENT,
    HEADER,
    MAX_START_BYTES,
    PACKET,
    PROTOCOL_VERSION,
    Start,
    audio_frame,
    event_frame,
    frame,
    parse_frame,
    parse_start,
)
from .rooms import STATS_SECONDS, Room, check_room_name
from .sessions import Connection, Framer, LiveStream

__all__ = ["room_endpoint", "stream_endpoint"]

START_SECONDS = 10.0  # the most a client may take to send its start message
CLOSE_SECONDS = 5.0  # the most the server waits for a closing handshake


class Close(NamedTuple):
    """Why a session ends by a rule: its close code, the reason, and the counter of
    refusals it adds to (None: a protocol error)."""

    code: int
    reason: str
    counter: str | None = None


class StreamSink:
    """The results of a ``/v1/stream`` session, framed for its client."""

    def __init__(self, connection: Connection, framer: Framer | None, format: str):
        self.connection = connection
        self.framer = framer
        self.format = format
        self.audio_out = True
        self.group = 1  # blocks per packet: fewer packets, less framing, more latency
        self._held: list = []
        self._stats_at = 0.0

    def ready(self) -> bool:
        return self.connection.ready()

    def tokens(self, toks) -> None:
        if self.framer is None:
            return
        self._held.append(toks)
        if len(self._held) >= self.group:
            self.connection.send(frame(PACKET, self.framer.packet(self._joined())))

    def final(self, num_samples: int, toks) -> None:
        if self.framer is not None:
            self._held.append(toks)
            data = self.framer.final(num_samples, self._joined())
            self.connection.send(frame(PACKET, data))

    def _joined(self):
        toks, self._held = np.concatenate(self._held), []
        return toks

    def audio(self, sig) -> None:
        if self.audio_out:
            self.connection.send(audio_frame(sig, self.format))

    def stats(self, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._stats_at >= STATS_SECONDS:
            self._stats_at = now
            self.connection.send(event_frame("stats", **fields))

    def end(self) -> None:
        self.connection.send(frame(END))
        self.connection.finish()

    def fail(self, code: int, reason: str) -> None:
        self.connection.fail(code, reason)


# ---------------------------------------------------------------------------------------
# The endpoints
# ---------------------------------------------------------------------------------------


async def stream_endpoint(websocket: WebSocket) -> None:
    """``/v1/stream``: audio -> tokens, tokens -> audio, or audio -> both."""
    await _session(websocket, "stream", _run_stream)


async def room_endpoint(websocket: WebSocket) -> None:
    """``/v1/rooms/{name}``: a room's sender, or one of its listeners."""
    await _session(websocket, "room", _run_room)


async def _session(websocket: WebSocket, kind: str, run) -> None:
    """Origin, admission, start message and clean-up, common to every socket."""
    server = websocket.app.state.server
    origin = websocket.headers.get("origin")
    allowed = server.config.allow_origins
    if not origin_allowed(origin, websocket.headers.get("host"), allowed):
        server.metrics.refused.labels("origin").inc()
        response = PlainTextResponse(
            f"origin {origin} may not open WebSockets here", status_code=403
        )
        await websocket.send_denial_response(response)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=pick_subprotocol(offered))
    connection = Connection(websocket)
    connection.start()
    key = server.admit()
    gauge = None
    try:
        if key is None:
            full = server.config.max_sessions
            refusal = Close(
                CLOSE.TRY_LATER,
                f"the server is full ({full} sessions); try again later",
                "capacity",
            )
        else:
            start = await _read_start(websocket, kind == "room")
            refusal = start if isinstance(start, Close) else None
        if refusal is None:
            given = subprotocol_key(offered) or start.api_key
            if not key_matches(server.config.api_key, given):
                refusal = Close(CLOSE.POLICY, "a valid API key is required", "auth")
        if refusal is None:
            gauge = kind if kind == "stream" or start.role == "send" else "listener"
            server.metrics.open_sessions.labels(gauge).inc()
            refusal = await run(server, websocket, connection, key, start)
        if refusal is not None:
            _refuse(server, connection, refusal)
    except Exception as exc:  # a bug: this session ends, the server goes on
        server.metrics.errors.labels("internal").inc()
        connection.fail(CLOSE.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if key is not None:
            server.release()
        if gauge is not None:
            server.metrics.open_sessions.labels(gauge).dec()
        await _closed(websocket, connection)


def _refuse(server, connection: Connection, refusal: Close) -> None:
    if refusal.counter:
        server.metrics.refused.labels(refusal.counter).inc()
    elif refusal.code != CLOSE.NORMAL:
        server.metrics.errors.labels("protocol").inc()
    connection.fail(refusal.code, refusal.reason)


async def _closed(websocket: WebSocket, connection: Connection) -> None:
    """Close the connection once its queue is sent (at once if the client is gone:
    the send fails), waiting for that at most ``CLOSE_SECONDS``."""
    connection.finish()  # no-op after fail(); a normal close after a vanished client
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(connection.wait_closed(), CLOSE_SECONDS)
    connection.cancel()


async def _read_start(websocket: WebSocket, room: bool) -> Start | Close:
    try:
        message = await asyncio.wait_for(websocket.receive(), START_SECONDS)
    except asyncio.TimeoutError:
        return Close(CLOSE.IDLE, "no start message in time")
    if message["type"] == "websocket.disconnect":
        return Close(CLOSE.NORMAL, "gone")
    text = message.get("text")
    if text is None:
        return Close(
            CLOSE.UNSUPPORTED, "the first message must be a JSON start message (text)"
        )
    if len(text) > MAX_START_BYTES:
        return Close(CLOSE.TOO_BIG, f"start message over {MAX_START_BYTES} bytes")
    try:
        return parse_start(text, room=room)
    except FocalCodecError as exc:
        return Close(CLOSE.POLICY, str(exc))


def _stream_of(server, key: int, start: Start, sink, audio_in: bool, audio_out: bool):
    """(model name, :class:`LiveStream`) for ``start``'s model and voice, or the
    :class:`Close` that refuses them."""
    try:
        name, codec = server.model(start.model)
    except KeyError as exc:
        return Close(CLOSE.POLICY, exc.args[0])
    if name not in server.schedulers:
        return Close(
            CLOSE.POLICY,
            f"model {name} is not causal: live streams need a causal model",
        )
    matching_set = None
    if start.voice is not None:
        voices = server.voices.get(name, {})
        if start.voice not in voices or not audio_out:
            known = ", ".join(voices) or "none"
            return Close(
                CLOSE.POLICY,
                f"voice {start.voice!r} is not served for {name} (voices: {known})",
            )
        matching_set = voices[start.voice]
    stream = LiveStream(
        key,
        codec,
        start,
        sink,
        audio_in=audio_in,
        audio_out=audio_out,
        matching_set=matching_set,
        max_buffered_seconds=server.config.max_buffered_seconds,
    )
    return name, stream


def _ready(name: str, codec: Any, start: Start, key: int) -> bytes:
    """The ``ready`` event: what the client needs to know of the model."""
    return event_frame(
        "ready",
        version=PROTOCOL_VERSION,
        session=key,
        model=name,
        direction=start.direction,
        format=start.format,
        sample_rate=start.sample_rate or int(codec.sample_rate_input),
        sample_rate_input=int(codec.sample_rate_input),
        sample_rate_output=int(codec.sample_rate_output),
        chunk_size=int(codec.chunk_size),
        chunk_tokens=int(codec.chunk_tokens),
        token_rate=float(codec.token_rate),
        bits_per_token=int(codec.bits_per_token),
        bitrate=float(codec.bitrate),
        voice=start.voice,
    )


async def _run_stream(server, websocket, connection, key: int, start: Start):
    """A ``/v1/stream`` session after its start message; returns why it ended by a
    rule (a :class:`Close`), or None."""
    audio_in = start.direction != "decode"
    audio_out = start.direction != "encode"
    sink = StreamSink(connection, None, start.format)
    made = _stream_of(server, key, start, sink, audio_in, audio_out)
    if isinstance(made, Close):
        return made
    name, stream = made
    if audio_in:
        sink.framer = Framer(
            header_for(stream.codec, stream.source_rate), start.entropy
        )
    sink.audio_out = audio_out
    sink.group = start.blocks_per_packet
    scheduler = server.schedulers[name]
    connection.on_drain = scheduler.wake
    connection.send(_ready(name, stream.codec, start, key))
    if sink.framer is not None:
        connection.send(frame(HEADER, sink.framer.header_bytes))
    scheduler.join(stream)
    try:
        return await _receive(server, websocket, connection, stream, None)
    finally:
        scheduler.leave(stream)


async def _run_room(server, websocket, connection, key: int, start: Start):
    """A room's sender or listener after its start message (as :func:`_run_stream`)."""
    name = websocket.path_params["name"]
    if not check_room_name(name):
        return Close(CLOSE.POLICY, "a room name is 1-64 letters, digits and _.-")
    if start.role == "listen":
        return await _listen(server, websocket, connection, key, start, name)
    made = _stream_of(server, key, start, None, start.input == "audio", True)
    if isinstance(made, Close):
        return made
    model, stream = made
    header = header_for(stream.codec, stream.source_rate)
    room = Room(name, connection, header, server.metrics, server.config.max_listeners)
    stream.sink = room
    room.stream, room.model = stream, model
    if not server.rooms.open(room):
        return Close(CLOSE.ROOM_TAKEN, f"room {name} already has a sender")
    scheduler = server.schedulers[model]
    connection.send(_ready(model, stream.codec, start, key))
    scheduler.join(stream)
    try:
        return await _receive(server, websocket, connection, stream, room)
    finally:
        scheduler.leave(stream)
        server.rooms.drop(room)


async def _listen(server, websocket, connection, key: int, start: Start, name: str):
    room = server.rooms.get(name)
    if room is None:
        return Close(CLOSE.NO_ROOM, f"room {name} has no sender")
    if not room.has_space():
        return Close(CLOSE.TRY_LATER, f"room {name} is full or has ended", "capacity")
    connection.send(_ready(room.model, room.stream.codec, start, key))
    room.add(key, connection, start)
    deadline = time.monotonic() + server.config.max_session_seconds
    try:
        message = await _next_message(websocket, connection, deadline, None)
        if isinstance(message, bytes):
            return Close(CLOSE.INVALID, "a listener sends nothing after its start")
        return message
    finally:
        room.remove(key)


# ---------------------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------------------


async def _next_message(websocket, connection, deadline: float, idle: float | None):
    """The next message's bytes; None when the client left or the server closed; a
    :class:`Close` past ``idle`` seconds of silence (None: no limit), past
    ``deadline``, or for a text frame."""
    receive = asyncio.ensure_future(websocket.receive())
    closed = asyncio.ensure_future(connection.closed.wait())
    left = deadline - time.monotonic()
    timeout = left if idle is None else min(idle, left)
    done, _ = await asyncio.wait(
        {receive, closed}, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED
    )
    closed.cancel()
    if receive not in done:
        receive.cancel()
        if closed in done:
            return None
        if time.monotonic() >= deadline:
            return Close(CLOSE.TOO_LONG, "the session reached its time limit")
        return Close(CLOSE.IDLE, f"nothing received for {idle:g} s")
    message = receive.result()
    if message["type"] == "websocket.disconnect":
        return None
    data = message.get("bytes")
    if data is None:
        return Close(CLOSE.UNSUPPORTED, "after the start message, frames are binary")
    return data


async def _receive(server, websocket, connection, stream: LiveStream, room):
    """Frames of a stream (or room sender) until END, a close or a broken rule;
    returns the :class:`Close` of a broken rule, or None."""
    config = server.config
    deadline = time.monotonic() + config.max_session_seconds
    while not connection.closed.is_set():
        while not stream.has_room() and not connection.closed.is_set():
            await asyncio.sleep(0.005)  # backpressure: the model is behind
        idle = None if stream.ended else config.idle_seconds
        data = await _next_message(websocket, connection, deadline, idle)
        if not isinstance(data, bytes):
            return data
        if len(data) > config.max_message_bytes:
            return Close(
                CLOSE.TOO_BIG, f"a frame over {config.max_message_bytes} bytes"
            )
        try:
            _handle(stream, room, parse_frame(data))
        except FocalCodecError as exc:
            return Close(CLOSE.INVALID, str(exc))
    return None


def _handle(stream: LiveStream, room: Room | None, message) -> None:
    kind, payload = message
    if kind == AUDIO:
        stream.add_audio(payload)
    elif kind == HEADER:
        stream.add_header(payload)
    elif kind == PACKET:
        toks = stream.add_packet(payload)
        if room is not None and len(toks):
            room.tokens(toks)
        if room is not None and stream.inbox.num_samples is not None:
            room.final(stream.inbox.num_samples, toks[:0])
    elif kind == END:
        stream.end()
    elif kind == EVENT:
        pass  # clients may send events (pings, marks); none is acted on yet
