"""Continuous batching: one scheduler per model steps every ready stream together.

A :class:`Scheduler` is an asyncio task. Each tick it collects, from every live stream
of its model, one whole block (audio to encode, or tokens to decode) and runs them all
in ONE batched :meth:`~focalcodec.streaming.batch.StreamBatch.encode` call and ONE
:meth:`~focalcodec.streaming.batch.StreamBatch.decode` call (a resynthesis stream's
new tokens are decoded in the same tick)::

    tick:  opens, closes --> encode {k: block} --> decode {k: toks} --> tails (alone)
           |<------------- one call of the model's worker thread ------------->|

The model runs in one worker thread per model (never on the event loop, which keeps
reading and sending for every client meanwhile). Streams join and leave at any tick:
opening and closing a row is bookkeeping done at the start of the next tick, so a new
session never delays the running ones. ``max_batch`` caps the rows of one step; the
streams left over go first at the next tick (round robin). A stream whose client does
not read its results is not stepped (its queue is full) until the client catches up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import FocalCodecError
from ..streaming.batch import StreamBatch
from .metrics import Metrics
from .protocol import CLOSE
from .sessions import LiveStream

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


@dataclass
class _Tick:
    """The inputs of one tick and, once run, its outputs."""

    opening: dict[int, LiveStream]
    closing: set[int]
    encode: dict[int, np.ndarray] = field(default_factory=dict)
    decode: dict[int, np.ndarray] = field(default_factory=dict)
    tails: dict[int, tuple] = field(default_factory=dict)
    chained: set[int] = field(default_factory=set)  # encoded, then decoded at once
    toks: dict[int, torch.Tensor] = field(default_factory=dict)
    sig: dict[int, torch.Tensor] = field(default_factory=dict)
    ended: dict[int, Any] = field(default_factory=dict)
    failed: dict[int, Exception] = field(default_factory=dict)
    seconds: float = 0.0
    decode_rows: int = 0


class Scheduler:
    """The continuous-batching loop of one served model.

    Parameters
    ----------
    name
        The model's public name (metrics label, thread name).
    codec
        The causal codec.
    max_streams
        Rows the batch may hold (the server's session cap).
    max_batch
        Rows of one batched step.
    metrics
        The server's metrics.
    """

    def __init__(
        self,
        name: str,
        codec: Any,
        *,
        max_streams: int,
        max_batch: int,
        metrics: Metrics,
    ) -> None:
        self.name = name
        self.codec = codec
        self.max_batch = max_batch
        self.metrics = metrics
        self.batch = StreamBatch(codec, max_streams)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"fc-{name}"[:15])
        self.members: dict[int, LiveStream] = {}
        self._opening: dict[int, LiveStream] = {}
        self._closing: set[int] = set()
        self._wake = asyncio.Event()
        self._turn = 0
        self._task: asyncio.Task | None = None
        self.last_stats: dict[str, float] = {"step_ms": 0.0, "batch": 0}

    # -- the loop --------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        """Something changed (input, an end, room in a queue): run a tick soon."""
        self._wake.set()

    def join(self, stream: LiveStream) -> None:
        """Add a stream; its row opens at the start of the next tick."""
        stream.wake = self.wake
        self._opening[stream.key] = stream
        self.wake()

    def leave(self, stream: LiveStream) -> None:
        """Remove a stream at any time (its client left or it ended)."""
        stream.wake = lambda: None
        if self._opening.pop(stream.key, None) is None:
            if self.members.pop(stream.key, None) is not None:
                self._closing.add(stream.key)
        self.wake()

    @property
    def size(self) -> int:
        """Streams joined (open or about to open)."""
        return len(self.members) + len(self._opening)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            tick = self._collect()
            try:
                await loop.run_in_executor(self.executor, self._work, tick)
            except (
                Exception
            ) as exc:  # a bug in a step: those streams end, not the server
                log.exception("scheduler %s: a tick failed", self.name)
                for key in (*tick.encode, *tick.decode, *tick.tails):
                    tick.failed.setdefault(key, exc)
                    self.batch.close(key)
            self._deliver(tick)
            if any(m.pending() and m.sink.ready() for m in self.members.values()):
                self._wake.set()

    # -- one tick ----------------------------------------------------------------------

    def _collect(self) -> _Tick:
        """Take one block from every ready stream, up to ``max_batch`` rows a step."""
        tick = _Tick(self._opening, self._closing)
        self.members.update(self._opening)
        self._opening, self._closing = {}, set()
        order = list(self.members.values())
        if order:
            self._turn %= len(order)
            order = order[self._turn :] + order[: self._turn]
            self._turn += 1
        for stream in order:
            self._take(stream, tick)
        return tick

    def _take(self, stream: LiveStream, tick: _Tick) -> None:
        """Add ``stream``'s next block, or its tail, to ``tick`` if there is room."""
        room_encode = len(tick.encode) < self.max_batch
        room_decode = tick.decode_rows < self.max_batch
        if stream.audio_in and room_encode and (room_decode or not stream.audio_out):
            block = stream.next_block()
            if block is not None:
                tick.encode[stream.key] = block
                if stream.audio_out:
                    tick.chained.add(stream.key)
                    tick.decode_rows += 1
                return
        elif not stream.audio_in and room_decode:
            toks = stream.next_tokens()
            if toks is not None:
                tick.decode[stream.key] = toks
                tick.decode_rows += 1
                return
        tail = stream.tail()
        if tail is not None:
            tick.tails[stream.key] = tail

    def _work(self, tick: _Tick) -> None:
        """The model's part of a tick (in the worker thread)."""
        batch = self.batch
        for key in tick.closing:
            batch.close(key)
        for key, stream in tick.opening.items():
            try:
                batch.open(
                    key,
                    encode=stream.audio_in,
                    decode=stream.audio_out,
                    matching_set=stream.matching_set,
                    topk=stream.topk,
                )
            except Exception as exc:  # that stream is refused; the others go on
                tick.failed[key] = exc
        # Each stream's input is checked on its own first, so that a bad block (a
        # sample far beyond full scale, say) ends that stream, not the whole tick.
        blocks = self._checked(tick, tick.encode, batch.check_block)
        tokens = self._checked(tick, tick.decode, batch.check_tokens)
        for key in tick.failed:
            batch.close(key)  # the stream ends: its row goes now, not with the client
            blocks.pop(key, None)
            tokens.pop(key, None)
            tick.encode.pop(key, None)
            tick.decode.pop(key, None)
            tick.tails.pop(key, None)
        start = time.perf_counter()
        if blocks:
            tick.toks = batch.encode(blocks)
        wanted = dict(tokens)
        wanted.update({k: tick.toks[k] for k in tick.chained if k in tick.toks})
        if wanted:
            tick.sig = batch.decode(wanted)
        tick.seconds = time.perf_counter() - start
        tick.decode_rows = len(wanted)
        for key, (sig, toks) in tick.tails.items():
            try:
                tick.ended[key] = batch.flush(
                    key,
                    None if sig is None else torch.from_numpy(sig),
                    None if toks is None else torch.from_numpy(toks),
                )
            except Exception as exc:
                batch.close(key)
                tick.failed[key] = exc

    @staticmethod
    def _checked(tick: _Tick, inputs: dict, check) -> dict:
        """``inputs`` as checked tensors; a stream whose input fails goes to
        ``tick.failed`` with the reason."""
        good = {}
        for key, value in inputs.items():
            try:
                good[key] = check(key, value)
            except Exception as exc:
                tick.failed[key] = exc
        return good

    def _deliver(self, tick: _Tick) -> None:
        """Hand each stream its results (on the event loop)."""
        for key, exc in tick.failed.items():
            stream = self.members.pop(key, None) or tick.opening.get(key)
            if stream is None:
                continue
            if isinstance(exc, FocalCodecError):  # what the client sent cannot work
                self.metrics.errors.labels("protocol").inc()
                stream.sink.fail(CLOSE.INVALID, str(exc).splitlines()[0][:120])
                continue
            self.metrics.errors.labels("internal").inc()
            stream.sink.fail(CLOSE.INTERNAL, f"the server failed this stream: {exc}")
        rows = len(tick.encode) + len(tick.decode)
        if rows:
            self.metrics.step(
                self.name, tick.seconds, len(tick.encode), tick.decode_rows
            )
            self.last_stats = {
                "step_ms": round(1000 * tick.seconds, 2),
                "batch": max(len(tick.encode), tick.decode_rows),
                "streams": len(self.members),
            }
        for key, stream in list(self.members.items()):
            try:
                self._give(tick, key, stream)
            except Exception as exc:  # a bug in one stream's sink: that one ends
                log.exception("scheduler %s: stream %s failed", self.name, key)
                self.members.pop(key, None)
                self._closing.add(key)
                self.metrics.errors.labels("internal").inc()
                stream.sink.fail(
                    CLOSE.INTERNAL, f"the server failed this stream: {exc}"
                )

    def _give(self, tick: _Tick, key: int, stream: LiveStream) -> None:
        if key in tick.toks:
            stream.got_tokens(tick.toks[key].numpy())
        if key in tick.sig:
            stream.got_audio(tick.sig[key].numpy())
        if key in tick.ended:
            tail = tick.ended[key]
            del self.members[key]  # flush() closed its row
            stream.got_tail(tail.toks.numpy(), tail.sig.numpy())
        elif key in tick.toks or key in tick.sig:
            stream.sink.stats(self.last_stats)
