"""What every corpus source yields: items with an id, audio and metadata, in shards.

A source (Parquet files, a ``save_to_disk`` folder, a Hub dataset, WebDataset tar
shards, Lhotse manifests or a Shar folder) is a list of :class:`Shard`; reading a
shard yields :class:`Item` one at a time, so only the item being read is in memory.
An item's audio is what the container holds: encoded bytes, a file path, an array
with its rate, or a callable that loads one of those. It is decoded where the items
are consumed (a DataLoader worker), never here.

Shards are the unit of work: under ``torchrun`` shard ``i`` goes to rank
``i % world_size``, whole, and a restarted run skips the items whose ids are stored.
"""

from __future__ import annotations

import glob
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ...errors import AudioError, DataError
from ...files.audio import check_signal, load_audio, resample

__all__ = [
    "Audio",
    "Item",
    "Shard",
    "ShardFailure",
    "Source",
    "decode_audio",
    "expand_spec",
    "is_pattern",
    "item_samples",
    "long_reader_source",
    "scalar_meta",
    "stored_key",
]

# Encoded bytes, a file, channels-first samples with their rate, or a loader of those.
Audio = bytes | Path | tuple[np.ndarray, int] | Callable[[], Any]
# Names the token folder gives meaning to; a source field of that name is stored as
# ``source_<name>`` so that it neither overwrites nor is overwritten (stored_key).
RESERVED = frozenset(
    {"id", "path", "shard", "shard_row", "tokens", "num_tokens", "num_samples"}
    | {"duration", "start", "file", "file_bytes", "file_crc32", "extra"}
)
_PREFIX = "source_"


def stored_key(key: str) -> str:
    """The name a source field is stored under: ``source_<name>`` for a name of
    :data:`RESERVED`, and for one that is already such a name (``source_id`` ->
    ``source_source_id``), so that no two fields ever meet; other names as they are."""
    bare = key
    while bare.startswith(_PREFIX):
        bare = bare[len(_PREFIX) :]
    return _PREFIX + key if bare in RESERVED else key


@dataclass
class Item:
    """One utterance of a corpus.

    Attributes
    ----------
    id
        Unique key; what resuming and the output index go by.
    shard
        Name of the shard it came from (shown in messages, stored with its tokens).
    row
        Position in its shard (the output is sorted by shard, then row).
    audio
        Encoded bytes, a file path, ``(samples, rate)`` with samples (N,) or (C, N),
        or a callable returning one of those.
    meta
        Scalar metadata carried into the output (text, speaker, columns, ...).
    path
        The file that holds the audio (an audio file, a Parquet file, a tar file).
    duration
        Seconds, when the source knows it without decoding (else None).
    """

    id: str
    shard: str
    row: int
    audio: Any
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    duration: float | None = None

    @property
    def name(self) -> str:
        """How messages call the item: its shard and its key."""
        return f"{self.shard} [{self.id}]"

    def record(self) -> dict[str, Any]:
        """What the token folder stores about it (besides tokens and lengths)."""
        meta = {stored_key(k): v for k, v in self.meta.items()}
        return {
            **meta,
            "id": self.id,
            "path": self.path,
            "shard": self.shard,
            "shard_row": self.row,
        }


@dataclass(frozen=True)
class Shard:
    """A unit of work: one file of a source (or a slice of one big manifest).

    Attributes
    ----------
    index
        Position in the source's shard list; rank ``index % world_size`` reads it.
    name
        Stable name, stored with every item's tokens.
    path
        What the reader opens (a path or URL).
    part
        Reader-specific detail (a split, an audio tar, a slice of a manifest).
    num_items
        Items in the shard when the source knows it cheaply (else None).
    """

    index: int
    name: str
    path: str
    part: Any = None
    num_items: int | None = None


@dataclass
class ShardFailure:
    """A shard that could not be read to its end (the items before were yielded)."""

    shard: str
    error: BaseException
    after: str | None = None

    @property
    def name(self) -> str:
        where = f" after item {self.after}" if self.after else ""
        return f"{self.shard} (shard, stopped{where})"


class Source:
    """A corpus in some container: a list of shards, each read as a stream of items.

    Subclasses set :attr:`kind` and implement :meth:`shards` and :meth:`read_shard`;
    they must pickle (DataLoader workers read shards in their own processes).
    """

    kind = "source"

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def shards(self) -> list[Shard]:
        """Every shard of the source, in source order (``index`` = position)."""
        raise NotImplementedError

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        """The items of one shard, in order."""
        raise NotImplementedError

    def read(self, shards: Iterable[Shard]) -> Iterator[Item | ShardFailure]:
        """Items of several shards; a shard that breaks yields a :class:`ShardFailure`
        and the next shard goes on."""
        for shard in shards:
            last = None
            try:
                for item in self.read_shard(shard):
                    last = item.id
                    yield item
            except Exception as exc:
                yield ShardFailure(shard.name, exc, last)

    def describe(self) -> str:
        """One line for a dataset card: the kind and where it was read."""
        return f"{self.kind}: {self.spec}"

    def column_types(self) -> dict[str, str] | None:
        """Stored field name (:func:`stored_key`) -> column kind
        (:mod:`focalcodec.tokens.columns`) of the scalar fields, where the container
        declares them (a Parquet schema); None: decided from the first items."""
        return None


def scalar_meta(values: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The scalar entries of ``values`` (str, int, float, bool, None), minus ``skip``."""
    leave = set(skip)
    return {
        k: v
        for k, v in values.items()
        if k not in leave and (v is None or isinstance(v, (str, int, float, bool)))
    }


def _named(data: bytes, name: str) -> io.BytesIO:
    buf = io.BytesIO(data)
    # soundfile sniffs the format from the bytes; the name is for messages.
    buf.name = name
    return buf


def _resolved(audio: Any) -> Any:
    return audio() if callable(audio) else audio


def item_samples(audio: Any, rate: int) -> int | None:
    """Samples at ``rate`` that ``audio`` decodes to, from its header or shape; None
    when that needs a decode (a callable, an unreadable header)."""
    if isinstance(audio, tuple):
        samples, source_rate = audio
        return round(np.shape(samples)[-1] * rate / source_rate)
    if not isinstance(audio, (bytes, bytearray, memoryview, Path)):
        return None
    try:
        src = audio if isinstance(audio, Path) else io.BytesIO(bytes(audio))
        info = sf.info(src)
    except Exception:
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return round(info.frames * rate / info.samplerate)


def decode_audio(audio: Any, rate: int, name: str) -> np.ndarray:
    """Decode, downmix and resample one item's audio.

    Parameters
    ----------
    audio
        See :class:`Item` (a callable is called first).
    rate
        Rate the model expects, in Hz.
    name
        How errors call the item.

    Returns
    -------
        Waveform, shape (N,), float32; :class:`~focalcodec.errors.AudioError` names
        the item when the audio cannot be decoded.
    """
    audio = _resolved(audio)
    if isinstance(audio, BaseException):  # the source could not read this item
        raise audio
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return load_audio(_named(bytes(audio), name), rate).sig
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, rate).sig
    if isinstance(audio, tuple) and len(audio) == 2:
        samples, source_rate = audio
        sig = np.asarray(samples, dtype=np.float32)
        if sig.ndim == 2:  # channels first, averaged as files are
            sig = sig.mean(axis=0, dtype=np.float32)
        if sig.ndim != 1 or not sig.size:
            raise AudioError(f"{name}: expected audio samples (N,) or (C, N)")
        sig = check_signal(np.ascontiguousarray(sig), name=name)
        return resample(sig, int(source_rate), rate)
    raise AudioError(f"{name}: no audio (got {type(audio).__name__})")


def long_reader_source(audio: Any, name: str) -> Any:
    """What :class:`~focalcodec.files.audio.AudioReader` reads for a long item: the
    file itself, or its encoded bytes (samples are wrapped as float WAV in memory)."""
    audio = _resolved(audio)
    if isinstance(audio, (str, os.PathLike)):
        return Path(audio)
    if isinstance(audio, tuple):
        samples, source_rate = audio
        sig = np.asarray(samples, dtype=np.float32)
        buf = io.BytesIO()
        frames = sig.T if sig.ndim == 2 else sig
        sf.write(buf, frames, int(source_rate), "FLOAT", format="WAV")
        return _named(buf.getvalue(), name)
    return _named(bytes(audio), name)


_BRACES = re.compile(r"\{([^{}]*)\}")


def _expand_braces(spec: str) -> list[str]:
    """``a{00..02}b`` -> a00b a01b a02b; ``{x,y}`` -> x y (zero padding kept)."""
    match = _BRACES.search(spec)
    if match is None:
        return [spec]
    body, head, tail = match.group(1), spec[: match.start()], spec[match.end() :]
    if ".." in body:
        lo, hi = body.split("..", 1)
        if not (lo.isdigit() and hi.isdigit()):
            raise DataError(
                f"{spec}: a range in braces needs numbers, like {{000..009}}"
            )
        width = len(lo) if lo.startswith("0") else 0
        options = [str(k).zfill(width) for k in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [x for o in options for x in _expand_braces(head + o + tail)]


def is_pattern(spec: str) -> bool:
    """True for a glob (``*``, ``?``, ``[``) or brace (``{0..9}``, ``{a,b}``) pattern."""
    return any(c in spec for c in "*?[") or bool(_BRACES.search(spec))


def expand_spec(spec: str) -> list[str]:
    """The files a path, glob or brace pattern names, sorted (URLs kept as they are)."""
    found: list[str] = []
    for one in _expand_braces(spec):
        if "://" in one or one.startswith("pipe:"):
            found.append(one)
        elif any(c in one for c in "*?["):
            found.extend(sorted(glob.glob(one, recursive=True)))
        else:
            found.append(one)
    return list(dict.fromkeys(found))
