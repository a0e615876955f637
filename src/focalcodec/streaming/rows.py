"""The state of many streams stepped together, a row each, kept without copying it.

:class:`~focalcodec.streaming.batch.StreamBatch` runs one model call for every stream
that has a block ready. The networks see their usual state structure, but each context
is a :class:`SharedContext` (``layers.SharedContext``) and each key/value cache a
:class:`SharedCache` (``attention.SharedCache``): objects that hold the state of every
open stream and know, through the shared :class:`Rows`, which stream each row of the
call in progress belongs to. A stream keeps its state whether it is in a call or not,
so streams join, leave and skip calls freely.

What each row computes is what its stream computes alone: the convolution of a row
sees that stream's past (or at its first block the invented past, replicate or zeros,
SPEC section 7), and attention runs row by row over that stream's own keys, at its own
position, with the bias and mask it gets alone. Only how the state is stored differs.
"""

from __future__ import annotations

from collections.abc import Hashable

import torch
from torch import Tensor

from ..modules.attention import GatedRelativeAttention, RowBias

__all__ = ["Rows", "SharedCache", "SharedContext"]


class Rows:
    """The streams of the call in progress, in row order (shared by all the state)."""

    def __init__(self) -> None:
        self.keys: list[Hashable] = []


class SharedContext:
    """One convolution's left contexts, for every stream (a ``layers.SharedContext``).

    Per stream it keeps the padded input of its last call, a row view (1, size + T, C):
    its last ``size`` frames are the stream's context, its first ``size`` frames the
    context before that call (to redo the call, :meth:`rewind`). Calls write their padded
    input into one of two buffers in turn, so a stream that was in the previous call
    reads its context from the other one: a steady batch copies each context once per
    call, as a stream alone does with ``torch.cat``, and allocates nothing. Before a
    buffer is written again, the streams that still live in it (they skipped a call)
    get a copy of their row.
    """

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.last: dict[Hashable, tuple[Tensor, int]] = {}  # padded row, its T
        self.home: dict[Hashable, tuple[int, int]] = {}  # (buffer, row) it lives in
        self.buffers: list[Tensor | None] = [None, None]
        self.turn = 0  # the buffer written last
        self.length: int | None = None  # size + T of the buffers' rows

    def extend(self, x: Tensor, size: int, mode: str) -> tuple[Tensor, SharedContext]:
        """Padded input (B, size + T, C) of row ``b``: its stream's context, then x[b]."""
        keys = self.rows.keys
        batch, frames, _ = x.shape
        out, slot = self._target(batch, size + frames, x)
        if not self._copy_aligned(out, keys, size):
            for i, key in enumerate(keys):
                entry = self.last.get(key)
                if entry is not None:
                    row = entry[0]
                    out[i, :size].copy_(row[0, row.shape[1] - size :])
                elif mode == "replicate":
                    out[i, :size].copy_(x[i, :1].expand(size, -1))
                else:
                    out[i, :size].zero_()
        out[:, size:].copy_(x)
        for i, key in enumerate(keys):
            self.last[key] = (out[i : i + 1], frames)
            if slot is None:
                self.home.pop(key, None)
            else:
                self.home[key] = (slot, i)
        return out, self

    def _target(self, batch: int, length: int, x: Tensor) -> tuple[Tensor, int | None]:
        """Where this call's padded input goes: the next buffer (and its index), or a
        new tensor (None) for a one-row call of another length (a stream's tail)."""
        if self.length is not None and length != self.length and batch == 1:
            return x.new_empty((1, length, x.shape[2])), None
        if length != self.length:
            # Dropped, not overwritten: the rows that live in old buffers stay valid.
            self.buffers, self.home, self.length = [None, None], {}, length
        slot = 1 - self.turn
        buffer = self.buffers[slot]
        if (
            buffer is None
            or buffer.shape[0] < batch
            or buffer.shape[2] != x.shape[2]
            or buffer.dtype != x.dtype
            or buffer.device != x.device
        ):
            capacity = batch if buffer is None else max(batch, 2 * buffer.shape[0])
            buffer = x.new_empty((capacity, length, x.shape[2]))
            self.buffers[slot] = buffer
            self.home = {k: h for k, h in self.home.items() if h[0] != slot}
        else:
            for key in [k for k, h in self.home.items() if h[0] == slot]:
                row, frames = self.last[key]
                self.last[key] = (row.clone(), frames)
                del self.home[key]
        self.turn = slot
        return buffer[:batch], slot

    def _copy_aligned(self, out: Tensor, keys: list[Hashable], size: int) -> bool:
        """One copy when row ``i`` of the last call is row ``i`` of this one (steady)."""
        previous = self.buffers[1 - self.turn]
        if previous is None or len(keys) > previous.shape[0]:
            return False
        frames = previous.shape[1] - size
        other = 1 - self.turn
        for i, key in enumerate(keys):
            if self.home.get(key) != (other, i) or self.last[key][1] != frames:
                return False
        out[:, :size].copy_(previous[: len(keys), frames:])
        return True

    def rewind(self, key: Hashable) -> None:
        """Make the context before the stream's last call its context again (once)."""
        entry = self.last.get(key)
        if entry is None:  # a context this model never reads (DownScale by 1)
            return
        row, frames = entry
        self.last[key] = (row[:, : row.shape[1] - frames].clone(), 0)
        self.home.pop(key, None)

    def context(self, key: Hashable) -> Tensor | None:
        """The stream's context (1, size, C), a copy; None before its first call."""
        entry = self.last.get(key)
        return None if entry is None else entry[0][:, entry[1] :].clone()

    def drop(self, key: Hashable) -> None:
        self.last.pop(key, None)
        self.home.pop(key, None)


class SharedCache:
    """One attention layer's key/value caches, for every stream (``attention.SharedCache``).

    Per stream, keys and values in an append-only buffer (2, 1, H, capacity, d), the
    newest row at ``end``: a call appends its rows in place and attends over the last
    ``start + T`` rows, a view that is contiguous per head (the same numbers as the
    model's own cache layout). When the buffer is full, its last ``window`` rows move to
    the front, once every ``window / 2T`` calls.
    """

    def __init__(self, rows: Rows, window: int) -> None:
        self.rows = rows
        self.window = window
        self.tapes: dict[Hashable, list] = {}  # key -> [buffer, end, T of last call]

    def attend(
        self,
        module: GatedRelativeAttention,
        x: Tensor,
        qkv: Tensor,
        position_bias: RowBias,
    ) -> Tensor:
        """Each row over its own stream's keys; (B, T, dim) before the projection."""
        q, k, v, _ = module.heads(qkv, None, 0, 0, None)  # (B, H, T, d) each
        gate = module.gate(x)  # row by row the same numbers (no reduction over rows)
        out = []
        for i, key in enumerate(self.rows.keys):
            start = position_bias.starts[i]
            keys, values = self._append(key, k[i], v[i], start)
            bias, mask = position_bias.bias[start], position_bias.mask[start]
            row = slice(i, i + 1)
            out.append(
                module.attend(x[row], q[row], keys, values, bias, mask, gate=gate[row])
            )
        return out[0] if len(out) == 1 else torch.cat(out)

    def _append(
        self, key: Hashable, k: Tensor, v: Tensor, start: int
    ) -> tuple[Tensor, Tensor]:
        """Write k, v (H, T, d) after the stream's rows; its last start + T keys and
        values, views (1, H, start + T, d)."""
        heads, frames, dim = k.shape
        entry = self.tapes.get(key)
        if entry is None:
            capacity = self.window + self.window // 2 + frames
            entry = [k.new_empty((2, 1, heads, capacity, dim)), 0, 0]
            self.tapes[key] = entry
        tape, end = entry[0], entry[1]
        if end + frames > tape.shape[3]:
            # The last `window` rows: enough for this call and to redo the last one.
            keep = min(end, self.window)
            capacity = max(tape.shape[3], keep + frames)
            moved = tape.new_empty((*tape.shape[:3], capacity, dim))
            moved[:, :, :, :keep].copy_(tape[:, :, :, end - keep : end])
            tape, end = moved, keep
            entry[0] = tape
        tape[0, 0, :, end : end + frames].copy_(k)
        tape[1, 0, :, end : end + frames].copy_(v)
        end += frames
        entry[1], entry[2] = end, frames
        size = start + frames
        return tape[0, :, :, end - size : end], tape[1, :, :, end - size : end]

    def rewind(self, key: Hashable) -> None:
        """Forget the rows of the stream's last call (once), to redo it."""
        entry = self.tapes.get(key)
        if entry is not None:
            entry[1] -= entry[2]
            entry[2] = 0

    def past(self, key: Hashable, rows: int) -> tuple[Tensor, Tensor] | None:
        """The stream's last ``rows`` keys and values (1, H, rows, d), copies."""
        entry = self.tapes.get(key)
        if entry is None:
            return None
        tape, end = entry[0], entry[1]
        return (
            tape[0, :, :, end - rows : end].clone(),
            tape[1, :, :, end - rows : end].clone(),
        )

    def drop(self, key: Hashable) -> None:
        self.tapes.pop(key, None)
