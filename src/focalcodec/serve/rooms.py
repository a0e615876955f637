"""Relay rooms: one sender's stream, encoded (or relayed) once, heard by many listeners.

A room exists while its sender is connected. The sender sends audio (the server encodes
it) or its own ``.fcz`` packets; the server decodes the stream once, and every listener
receives the token packets, the decoded audio, or both, as it asked::

    sender --audio or packets--> [ one LiveStream in the scheduler ] --> Room
        Room --packets/audio--> listener 1, listener 2, ... (each its own queue)

A listener that cannot keep up never slows the room: when its queue is full, the
block it cannot take (packet and audio together) is skipped whole, and before the next
block it receives it is told with a ``skipped`` event. Each listener's packets are
framed for it alone (its own header and CRC chain), so whatever it joined late or
skipped, the header and packets it received make a valid ``.fcz`` file of the blocks it
heard. When the sender leaves, every listener receives END and the room is gone.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from .metrics import Metrics
from .protocol import END, HEADER, PACKET, audio_frame, event_frame, frame
from .sessions import Connection, Framer, LiveStream

__all__ = ["Listener", "Room", "Rooms", "check_room_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
STATS_SECONDS = 0.5  # at most one stats event per this many seconds and client


def check_room_name(name: str) -> bool:
    """Whether ``name`` is a room name: 1-64 letters, digits, ``_.-``."""
    return bool(_NAME.fullmatch(name))


class Listener:
    """One listener's queue: its own framing of the packets, its audio, its skips."""

    def __init__(
        self, connection: Connection, framer: Framer | None, audio: str | None
    ) -> None:
        self.connection = connection
        self.framer = framer
        self.audio_format = audio  # PCM format, or None: no audio
        self.skipped = 0  # blocks skipped since the last one delivered
        self.skipped_total = 0
        self._dropping = False  # the current block is being skipped
        self._stats_at = 0.0
        if framer is not None:
            connection.send(frame(HEADER, framer.header_bytes))

    def block_starts(self, metrics: Metrics) -> None:
        """A new block: take it whole if there is room for it, else skip it whole."""
        self._dropping = not self.connection.ready()
        if self._dropping:
            self.skipped += 1
            self.skipped_total += 1
            metrics.skipped.inc()
        else:
            self._tell_skipped()

    def _tell_skipped(self) -> None:
        """The ``skipped`` event, before the next block the listener gets (or its end)."""
        if self.skipped:
            total = self.skipped_total
            self.connection.send(
                event_frame("skipped", packets=self.skipped, total=total)
            )
            self.skipped = 0

    def tokens(self, toks: np.ndarray) -> None:
        if self.framer is not None and not self._dropping:
            self.connection.send(frame(PACKET, self.framer.packet(toks)))

    def audio(self, sig: np.ndarray) -> None:
        if self.audio_format is not None and not self._dropping:
            self.connection.send(audio_frame(sig, self.audio_format))

    def final(self, num_samples: int, toks: np.ndarray) -> None:
        """The FINAL packet, always sent (the listener's file must end)."""
        self._tell_skipped()
        if self.framer is not None:
            self.connection.send(frame(PACKET, self.framer.final(num_samples, toks)))

    def stats(self, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._stats_at >= STATS_SECONDS and self.connection.ready():
            self._stats_at = now
            self.connection.send(event_frame("stats", **fields))

    def end(self, reason: str | None = None) -> None:
        self._tell_skipped()
        if reason:
            self.connection.send(event_frame("room_ended", reason=reason))
        self.connection.send(frame(END))
        self.connection.finish()


class Room:
    """A room's listeners, and the sink of its sender's stream.

    Parameters
    ----------
    name
        The room's name.
    sender
        The sender's connection (it gets events and the END, not the results).
    header
        The plain ``.fcz`` header of the stream, for every listener's framing.
    metrics
        The server's metrics.
    max_listeners
        Listeners at once; more are refused with code 1013.
    """

    def __init__(
        self,
        name: str,
        sender: Connection,
        header: Any,
        metrics: Metrics,
        max_listeners: int,
    ) -> None:
        self.name = name
        self.sender = sender
        self.header = header
        self.metrics = metrics
        self.max_listeners = max_listeners
        self.listeners: dict[int, Listener] = {}
        self.stream: LiveStream | None = None
        self.model = ""  # the public name of the stream's model
        self.total_tokens = 0
        self.ended = False
        self._stats_at = 0.0

    def has_space(self) -> bool:
        """Whether a listener may join now."""
        return not self.ended and len(self.listeners) < self.max_listeners

    def add(self, key: int, connection: Connection, start: Any) -> Listener:
        """A new listener (check :meth:`has_space` first); its header is queued."""
        framer = Framer(self.header) if "packets" in start.receive else None
        audio = start.format if "audio" in start.receive else None
        listener = Listener(connection, framer, audio)
        self.listeners[key] = listener
        return listener

    def remove(self, key: int) -> None:
        self.listeners.pop(key, None)

    # -- the sink of the sender's stream -------------------------------------------

    def ready(self) -> bool:
        return True  # listeners skip; the room never waits for them

    def tokens(self, toks: np.ndarray) -> None:
        self.total_tokens += len(toks)
        for listener in self.listeners.values():
            listener.block_starts(self.metrics)
            listener.tokens(toks)

    def audio(self, sig: np.ndarray) -> None:
        if self.stream is not None and not self.stream.audio_in and len(sig):
            # A packet sender's room: the block begins with its audio.
            for listener in self.listeners.values():
                listener.block_starts(self.metrics)
        for listener in self.listeners.values():
            listener.audio(sig)

    def final(self, num_samples: int, toks: np.ndarray) -> None:
        total = self.total_tokens + len(toks)
        hop = int(self.header.hop_length)
        for listener in self.listeners.values():
            if listener.framer is None:
                continue
            # The samples of the tokens this listener heard (joined late or skipped).
            heard = listener.framer.num_tokens + len(toks)
            listener.final(max(num_samples - (total - heard) * hop, 0), toks)

    def stats(self, fields: dict[str, Any]) -> None:
        listeners = len(self.listeners)
        for listener in self.listeners.values():
            listener.stats({**fields, "listeners": listeners})
        now = time.monotonic()
        if now - self._stats_at >= STATS_SECONDS and self.sender.ready():
            self._stats_at = now
            self.sender.send(event_frame("stats", **fields, listeners=listeners))

    def end(self) -> None:
        self.close(None)
        self.sender.send(frame(END))
        self.sender.finish()

    def fail(self, code: int, reason: str) -> None:
        self.close("the sender's stream failed")
        self.sender.fail(code, reason)

    def close(self, reason: str | None) -> None:
        """End the room for every listener (once)."""
        if self.ended:
            return
        self.ended = True
        for listener in self.listeners.values():
            listener.end(reason)


class Rooms:
    """The rooms of a server, by name."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def open(self, room: Room) -> bool:
        """Register ``room``; False when its name is taken."""
        if room.name in self.rooms:
            return False
        self.rooms[room.name] = room
        return True

    def drop(self, room: Room, reason: str = "the sender left") -> None:
        """Remove ``room`` and end it for its listeners."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        room.close(reason)
