"""The live-stream protocol of ``/v1/stream`` and ``/v1/rooms/{name}`` (version 1).

Specified in ``docs/serve.md``. In short: the client opens with one text frame, a JSON
start message; every later frame is binary, and its first byte names its kind::

    0x01 AUDIO   PCM samples (s16le or f32le, mono) at the rate the start message set
                 (client -> server) or at the model's output rate (server -> client)
    0x02 HEADER  the .fcz header bytes (sent once, before any packet)
    0x03 PACKET  one .fcz packet (tokens of one block, or the FINAL packet)
    0x04 EVENT   a UTF-8 JSON object {"event": NAME, ...}
    0x05 END     no payload: "flush and finish" (client) / "that was all" (server)

HEADER followed by every PACKET, concatenated, is a valid ``.fcz`` file. This module
only knows bytes: it builds and parses frames and checks start messages; it imports
nothing of the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError

__all__ = [
    "AUDIO",
    "CLOSE",
    "DIRECTIONS",
    "END",
    "EVENT",
    "FORMATS",
    "Frame",
    "HEADER",
    "KIND_NAMES",
    "PACKET",
    "PROTOCOL_VERSION",
    "Start",
    "audio_frame",
    "event_frame",
    "frame",
    "parse_frame",
    "parse_start",
    "pcm_to_samples",
    "samples_to_pcm",
]

PROTOCOL_VERSION = 1
AUDIO, HEADER, PACKET, EVENT, END = 0x01, 0x02, 0x03, 0x04, 0x05
KIND_NAMES = {AUDIO: "audio", HEADER: "header", PACKET: "packet", EVENT: "event"}
KIND_NAMES[END] = "end"
DIRECTIONS = ("encode", "decode", "resynth")
FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
ROLES = ("send", "listen")
RECEIVE = ("packets", "audio")
ENTROPY = ("none", "adaptive")
MAX_START_BYTES = 4096


class CLOSE:
    """WebSocket close codes the server uses (RFC 6455 ones and private 4xxx)."""

    NORMAL = 1000  # the stream ended (after END)
    GOING_AWAY = 1001  # the server shuts down
    UNSUPPORTED = 1003  # a text frame where a binary one belongs, or the reverse
    INVALID = 1007  # a malformed frame: unknown kind, bad PCM, bad packet, bad JSON
    POLICY = 1008  # refused: API key, Origin, a start message that cannot work
    TOO_BIG = 1009  # a message over the size cap
    INTERNAL = 1011  # the server failed (a bug); other sessions go on
    TRY_LATER = 1013  # over --max-sessions: try again later
    IDLE = 4001  # no message for --idle-seconds
    TOO_LONG = 4002  # the session ran past --max-session-seconds
    NO_ROOM = 4004  # a listener asked for a room that has no sender
    ROOM_TAKEN = 4009  # a second sender for a room
    SLOW = 4029  # a client that reads nothing while its queue is full (stream)


class Frame(NamedTuple):
    """A parsed binary frame: its kind byte and the bytes after it."""

    kind: int
    payload: bytes


def frame(kind: int, payload: bytes = b"") -> bytes:
    """The bytes of a binary frame of ``kind`` (one of the kind constants)."""
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown frame kind {kind}")
    return bytes([kind]) + payload


def event_frame(name: str, **fields: Any) -> bytes:
    """An EVENT frame: ``{"event": name, **fields}`` as compact UTF-8 JSON."""
    body = json.dumps({"event": name, **fields}, separators=(",", ":"))
    return frame(EVENT, body.encode())


def parse_frame(data: bytes) -> Frame:
    """Split a binary frame into kind and payload.

    Raises :class:`~focalcodec.errors.InputError` for an empty frame, an unknown kind
    or an END frame with a payload (the server closes with 1007).
    """
    if not data:
        raise InputError("empty binary frame: the first byte must name its kind")
    kind = data[0]
    if kind not in KIND_NAMES:
        raise InputError(
            f"unknown frame kind 0x{kind:02x}; kinds are "
            + ", ".join(f"0x{k:02x} {n}" for k, n in KIND_NAMES.items())
        )
    if kind == END and len(data) > 1:
        raise InputError("an END frame carries no payload")
    return Frame(kind, bytes(data[1:]))


def parse_event(payload: bytes) -> dict[str, Any]:
    """The JSON object of an EVENT frame's payload."""
    try:
        event = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"event is not UTF-8 JSON ({exc})") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise InputError('an event is a JSON object with a string "event" field')
    return event


# ---------------------------------------------------------------------------------------
# PCM
# ---------------------------------------------------------------------------------------


def pcm_to_samples(payload: bytes, format: str) -> np.ndarray:
    """PCM bytes -> float32 samples (n,) in [-1, 1].

    Raises :class:`~focalcodec.errors.InputError` for a partial sample or, in
    ``f32le``, a NaN or infinite one.
    """
    dtype = FORMATS[format]
    if len(payload) % dtype.itemsize:
        raise InputError(
            f"audio frame of {len(payload)} bytes is not a whole number of "
            f"{format} samples ({dtype.itemsize} bytes each)"
        )
    raw = np.frombuffer(payload, dtype=dtype)
    if format == "s16le":
        return raw.astype(np.float32) / 32768.0
    samples = raw.astype(np.float32)
    if not np.isfinite(samples).all():
        raise InputError("audio frame holds NaN or infinite samples")
    return samples


def samples_to_pcm(samples: np.ndarray, format: str) -> bytes:
    """Float samples (n,) -> PCM bytes; s16le is clipped to full scale first."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if format == "s16le":
        scaled = np.clip(samples, -1.0, 1.0) * 32767.0
        return np.round(scaled).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()


def audio_frame(samples: np.ndarray, format: str) -> bytes:
    """An AUDIO frame of float samples (n,) in ``format``."""
    return frame(AUDIO, samples_to_pcm(samples, format))


# ---------------------------------------------------------------------------------------
# The start message
# ---------------------------------------------------------------------------------------


@dataclass
class Start:
    """A checked start message (see ``docs/serve.md`` for every field).

    ``direction`` applies to ``/v1/stream``; ``role``, ``input`` and ``receive`` to
    rooms. Unknown fields are refused, so that a typo is not silently ignored.
    """

    version: int = PROTOCOL_VERSION
    model: str | None = None
    direction: str = "resynth"
    format: str = "s16le"
    sample_rate: int | None = None
    voice: str | None = None
    api_key: str | None = None
    entropy: str = "none"
    role: str | None = None
    input: str = "audio"
    receive: list[str] = field(default_factory=lambda: list(RECEIVE))
    blocks_per_packet: int = 1


_CHOICES = {
    "direction": DIRECTIONS,
    "format": tuple(FORMATS),
    "entropy": ENTROPY,
    "role": ROLES,
    "input": ("audio", "packets"),
}
_TYPES = {
    "model": str,
    "voice": str,
    "api_key": str,
    "sample_rate": int,
    "blocks_per_packet": int,
}
MAX_BLOCKS_PER_PACKET = 50  # 4 s at 80 ms blocks


def parse_start(text: str | bytes, room: bool = False) -> Start:
    """Check a start message (JSON text of one object).

    Raises :class:`~focalcodec.errors.InputError` when it cannot work (the server
    closes with 1008).
    """
    if len(text) > MAX_START_BYTES:
        raise InputError(f"start message over {MAX_START_BYTES} bytes")
    try:
        fields = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"start message is not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise InputError("the start message is a JSON object")
    known = set(Start.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(
            f"unknown start field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    start = Start(**fields)
    _check_start(start, room)
    return start


def _check_start(start: Start, room: bool) -> None:
    if start.version != PROTOCOL_VERSION:
        raise InputError(
            f"protocol version {start.version!r} is not supported; this server speaks "
            f"version {PROTOCOL_VERSION}"
        )
    for name, choices in _CHOICES.items():
        value = getattr(start, name)
        if (value is not None or name != "role") and value not in choices:
            raise InputError(
                f"{name} must be one of {', '.join(choices)}, got {value!r}"
            )
    for name, kind in _TYPES.items():
        value = getattr(start, name)
        if value is not None and (type(value) is not kind):
            raise InputError(f"{name} must be a {kind.__name__}, got {value!r}")
    if start.sample_rate is not None and not 8000 <= start.sample_rate <= 192000:
        raise InputError(
            f"sample_rate must be in [8000, 192000] Hz, got {start.sample_rate}"
        )
    if not 1 <= start.blocks_per_packet <= MAX_BLOCKS_PER_PACKET:
        raise InputError(
            f"blocks_per_packet must be in [1, {MAX_BLOCKS_PER_PACKET}], got "
            f"{start.blocks_per_packet}"
        )
    if room and start.role is None:
        raise InputError('a room start message needs "role": send or listen')
    receive = start.receive
    if not isinstance(receive, list) or not receive or set(receive) - set(RECEIVE):
        raise InputError(f"receive must be a non-empty list of {', '.join(RECEIVE)}")
