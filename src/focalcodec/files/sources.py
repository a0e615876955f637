"""Inputs that can be read more than once, whatever they are.

Decoders need to seek: soundfile reads a header and comes back, a ``.fcz`` reader
checks the magic first. Paths to regular files and seekable file objects are used as
they are; a pipe (``<(cat a.wav)``, ``/dev/stdin``), a socket or any other stream that
cannot seek is first copied to an anonymous temporary file, in pieces of
:data:`PIECE_BYTES`, so memory stays bounded however large the input (and, with
``limit``, the copy stops as soon as the input is larger than the caller allows).

Example
-------
>>> with seekable(sys.stdin.buffer, name="<stdin>") as source:  # doctest: +SKIP
...     reader = AudioReader(source, 16000, name="<stdin>")
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

__all__ = ["PIECE_BYTES", "Source", "is_seekable", "peek", "seekable", "source_name"]

Source = str | os.PathLike | BinaryIO
# Bytes copied per read when a stream is spooled.
PIECE_BYTES = 1 << 20


def source_name(source: Source, name: str | None = None) -> str:
    """How messages call a source: ``name``, the path, a file object's path, or
    ``<stream>`` (never the ``repr`` of an object)."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    path = getattr(source, "name", None)
    return path if isinstance(path, str) and path else "<stream>"


def is_seekable(fileobj: BinaryIO) -> bool:
    """Whether a binary file object can go back (``tell`` and ``seek`` work)."""
    try:
        if callable(getattr(fileobj, "seekable", None)) and not fileobj.seekable():
            return False
        fileobj.seek(fileobj.tell())
        return True
    except (OSError, ValueError, AttributeError):
        return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return True  # missing or unreadable: the reader reports it by name


@contextmanager
def seekable(
    source: Source, *, name: str | None = None, limit: int | None = None
) -> Iterator[str | os.PathLike | BinaryIO]:
    """``source``, or a spooled copy of it that can seek, for the ``with`` block.

    Parameters
    ----------
    source
        A path or a binary file object.
    name
        How to call it in messages (default: :func:`source_name`).
    limit
        Most bytes a spooled stream may hold; a larger one raises
        :class:`~focalcodec.errors.InputError` as soon as the limit is passed.

    Yields
    ------
        The path or file object itself when it can seek, else a temporary file
        positioned at its start (deleted after the block).
    """
    if isinstance(source, (str, os.PathLike)):
        if _is_regular(Path(source)):
            yield source
            return
        with open(source, "rb") as fileobj:
            with _spooled(fileobj, source_name(source, name), limit) as copy:
                yield copy
        return
    if is_seekable(source):
        yield source
        return
    with _spooled(source, source_name(source, name), limit) as copy:
        yield copy


@contextmanager
def _spooled(stream: BinaryIO, name: str, limit: int | None) -> Iterator[BinaryIO]:
    with tempfile.TemporaryFile() as copy:
        total = 0
        while piece := stream.read(PIECE_BYTES):
            total += len(piece)
            if limit is not None and total > limit:
                raise InputError(f"{name}: larger than the {limit}-byte limit")
            copy.write(piece)
        copy.seek(0)
        yield copy


def peek(source: str | os.PathLike | BinaryIO, size: int) -> bytes:
    """The first ``size`` bytes of a path or seekable file object, which is left
    where it was."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fileobj:
                return fileobj.read(size)
        except OSError:
            return b""  # the reader that opens it next reports the problem
    where = source.tell()
    try:
        return source.read(size)
    finally:
        source.seek(where)
