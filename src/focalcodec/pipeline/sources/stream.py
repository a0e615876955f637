"""A source's shards as a stream of decoded audio, for the DataLoader workers.

:class:`ShardStream` hands each worker whole shards (worker ``w`` of ``W`` reads every
``W``-th of the rank's shards) and decodes items as they come; :func:`stream_batches`
gathers a pool of decoded items (a few buckets' worth) before cutting it into
length-sorted buckets (:func:`focalcodec.pipeline.loader.plan_buckets`), so memory holds
a pool, never a corpus. Items too long to decode whole, undecodable items and broken
shards are passed on as they come, so that one bad item never stops a run.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ...errors import AudioError, DataError
from ..loader import plan_buckets
from .base import Item, Shard, ShardFailure, Source, decode_audio, item_samples

__all__ = [
    "ItemFailure",
    "LongItem",
    "ShardStream",
    "StreamBatch",
    "stream_batches",
]


@dataclass
class ItemFailure:
    """An item of a stream that could not be decoded: its name and the error."""

    name: str
    error: BaseException


@dataclass
class LongItem:
    """An item too long to decode whole: encoded alone, piece by piece, by the caller."""

    item: Item


@dataclass
class _Decoded:
    record: dict[str, Any]
    sig: np.ndarray
    name: str


@dataclass
class StreamBatch:
    """Decoded items of a stream, zero-padded: sig (B, N), lengths (B,), and each
    row's record (what the token folder stores) and name (for messages)."""

    sig: torch.Tensor
    lengths: torch.Tensor
    records: list[dict[str, Any]]
    names: list[str]


def _too_short(name: str, n: int, rate: int, minimum: int) -> AudioError:
    return AudioError(
        f"{name}: too short ({n} samples at {rate} Hz); need at least {minimum}"
    )


class ShardStream(IterableDataset):
    """Items of some shards of a source, decoded; each worker reads whole shards.

    Parameters
    ----------
    source
        The corpus.
    shards
        The shards to read (this rank's); worker ``w`` of ``W`` reads every ``W``-th.
    skip
        Shard name -> ids already stored, passed over without decoding.
    sample_rate
        Rate the model expects.
    min_samples
        Shorter audio is reported as too short.
    long_samples
        Longer audio comes back undecoded, as a :class:`LongItem`.
    """

    def __init__(
        self,
        source: Source,
        shards: Sequence[Shard],
        skip: dict[str, set[str]],
        sample_rate: int,
        min_samples: int,
        long_samples: int,
    ) -> None:
        self.source = source
        self.shards = list(shards)
        self.skip = skip
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self.long_samples = long_samples

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        shards = (
            self.shards if info is None else self.shards[info.id :: info.num_workers]
        )
        for out in self.source.read(shards):
            if isinstance(out, ShardFailure):
                out.error = _portable(out.error)
                yield out
            elif out.id not in self.skip.get(out.shard, ()):
                yield self.decode(out)

    def decode(self, item: Item) -> _Decoded | LongItem | ItemFailure:
        rate = self.sample_rate
        try:
            # The header first: a duration in the metadata may be wrong, and a long
            # item decoded whole here would hold all of its audio in memory.
            samples = item_samples(item.audio, rate)
            if samples is None and item.duration is not None:
                samples = round(item.duration * rate)
            if samples is not None and samples > self.long_samples:
                return LongItem(item)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # clipping: one file's concern
                sig = decode_audio(item.audio, rate, item.name)
            if len(sig) < self.min_samples:
                raise _too_short(item.name, len(sig), rate, self.min_samples)
            if len(sig) > self.long_samples:
                return LongItem(item)
            return _Decoded(item.record(), sig, item.name)
        except Exception as exc:
            return ItemFailure(item.name, _portable(exc))


def _portable(exc: BaseException) -> BaseException:
    """The error, or its message alone where it holds what cannot cross to the main
    process (an open file): a worker's failure must not be lost on the way."""
    try:
        pickle.dumps(exc)
    except Exception:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DataError(text)
    return exc


def _collate_stream(pool: list[_Decoded]) -> StreamBatch:
    longest = max(len(d.sig) for d in pool)
    sig = torch.zeros(len(pool), longest)
    for row, d in enumerate(pool):
        sig[row, : len(d.sig)] = torch.from_numpy(d.sig)
    lengths = torch.tensor([len(d.sig) for d in pool], dtype=torch.long)
    return StreamBatch(sig, lengths, [d.record for d in pool], [d.name for d in pool])


def _buckets(pool: list[_Decoded], budget: int, max_items: int | None):
    for bucket in plan_buckets([len(d.sig) for d in pool], budget, max_items):
        yield _collate_stream([pool[i] for i in bucket])


def stream_batches(
    stream: ShardStream,
    *,
    budget: int,
    max_items: int | None = None,
    single: bool = False,
    workers: int = 1,
    pool_buckets: int = 4,
) -> Iterator[StreamBatch | LongItem | ItemFailure | ShardFailure]:
    """Batches of a stream, decoded ``workers`` at a time; failures and long items are
    passed on as they come.

    Parameters
    ----------
    stream
        The items.
    budget
        Samples per padded batch (items x longest item), as in :func:`plan_buckets`.
    max_items
        At most this many items per batch.
    single
        One item per batch, in arrival order (for item-by-item encoding).
    workers
        DataLoader worker processes (0: decode in this process).
    pool_buckets
        Decoded audio gathered before it is cut into buckets, in budgets: more means
        less padding and more memory.
    """
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    pool: list[_Decoded] = []
    pooled = 0
    for out in loader:
        if not isinstance(out, _Decoded):
            yield out
        elif single:
            yield _collate_stream([out])
        else:
            pool.append(out)
            pooled += len(out.sig)
            if pooled >= pool_buckets * budget:
                yield from _buckets(pool, budget, max_items)
                pool, pooled = [], 0
    if pool:
        yield from _buckets(pool, budget, max_items)
