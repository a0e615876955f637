"""Append-only buffers ("tapes") for streaming contexts that grow in place.

A streaming step concatenates its few new frames to a long context (511 frames for a
512-tap convolution, a 512-row key/value cache) and keeps the last frames for the next
step. :func:`append_time` gives the same values without copying the whole context at
every step. Used by the streaming subclasses of :mod:`focalcodec.deploy.lean`.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["append_time"]


def append_time(past: Tensor, x: Tensor, dim: int, keep: int) -> tuple[Tensor, Tensor]:
    """``torch.cat([past, x], dim)`` and its last ``keep`` frames, without the copy.

    The fast modes' replacement of the context concatenation of streaming steps. Both results
    are views of an append-only buffer (a "tape") with room for later frames; the kept
    frames remember their tape, so the next call appends its frames in place after them
    instead of copying the whole context again. Frames already in a tape are never
    overwritten: a call appends in place only when its ``past`` ends where the tape does
    (no later call has appended yet); any other ``past`` (an older state replayed, a state
    from the exact model, the start of a stream) is copied into a new tape. So, as with
    ``torch.cat``, no state seen by a caller ever changes.

    Parameters
    ----------
    past
        Earlier frames, any number along ``dim`` (e.g. (B, P, C) with ``dim=1``).
    x
        New frames, the same shape as ``past`` except along ``dim``.
    dim
        The time dimension.
    keep
        How many of the last frames the next call needs (at most P + T).

    Returns
    -------
    The concatenation (P + T frames along ``dim``) and its last ``keep`` frames.
    """
    size, frames = past.shape[dim], x.shape[dim]
    tape = getattr(past, "_focalcodec_tape", None)
    if tape is not None and tape.can_append(past, frames):
        tape.data.narrow(dim, tape.end, frames).copy_(x)
        tape.end += frames
    else:
        tape = _Tape(past, x, dim, keep)
    both = tape.data.narrow(dim, tape.end - size - frames, size + frames)
    kept = tape.data.narrow(dim, tape.end - keep, keep)
    kept._focalcodec_tape = tape
    return both, kept


class _Tape:
    """Append-only buffer behind :func:`append_time`; ``end`` is its first free frame."""

    def __init__(self, past: Tensor, x: Tensor, dim: int, keep: int) -> None:
        size, frames = past.shape[dim], x.shape[dim]
        # Room for many calls' frames: a new tape (one copy of the context) is then
        # needed only every ``capacity / frames`` calls.
        capacity = size + frames + max(4 * keep, 256)
        shape = list(x.shape)
        shape[dim] = capacity
        self.data = x.new_empty(shape)
        self.dim = dim
        self.data.narrow(dim, 0, size).copy_(past)
        self.data.narrow(dim, size, frames).copy_(x)
        self.end = size + frames

    def can_append(self, past: Tensor, frames: int) -> bool:
        """Whether ``past`` ends at this tape's end and ``frames`` more fit."""
        size = past.shape[self.dim]
        if self.end + frames > self.data.shape[self.dim] or size > self.end:
            return False
        tail = self.data.narrow(self.dim, self.end - size, size)
        return (
            past.data_ptr() == tail.data_ptr()
            and past.shape == tail.shape
            and past.stride() == tail.stride()
        )
