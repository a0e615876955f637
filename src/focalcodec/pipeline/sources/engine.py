"""Tokenize a corpus in a container: shards to ranks, each shard read as a stream.

The same job as :func:`focalcodec.pipeline.tokenize.tokenize_entries` (the token
folder, its journals, resuming, the encoding, the long-item path), fed from a
:class:`~focalcodec.pipeline.sources.base.Source` instead of a list of files:

* rank ``r`` of ``W`` reads the shards whose index is ``r`` modulo ``W``, whole, and
  its DataLoader workers read one shard each at a time;
* a restart passes over the items already stored from the rank's shards (by id,
  whatever the number of ranks before) without decoding them;
* rank 0 writes the index in source order (shard, then row) and the sinks: the
  dataset card of a Parquet folder, the Lhotse Shar field of the ``shar`` format.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...runtime import DistInfo
from ...tokens.card import write_card
from ...tokens.dataset import TokenWriter, token_meta
from ..tokenize import (
    OnError,
    TokenizeJob,
    TokenizeOptions,
    TokenizeReport,
    check_options,
    open_output,
)
from .base import Item, Shard, Source, long_reader_source
from .resume import skip_sets, source_order, stored_places
from .stream import LongItem, ShardStream, StreamBatch, stream_batches

__all__ = ["tokenize_source"]


def tokenize_source(
    source: Source,
    out: str | os.PathLike,
    codec: Any,
    options: TokenizeOptions,
    dist: DistInfo,
    on_error: OnError | None = None,
) -> TokenizeReport:
    """Tokenize ``source`` into the token folder ``out``; call on every rank.

    Parameters
    ----------
    source
        See :func:`focalcodec.pipeline.sources.open_source`.
    out, codec, options, dist
        As for :func:`focalcodec.pipeline.tokenize.tokenize_entries`; with
        ``options.fmt == "shar"`` the folder is an npy token folder that also holds
        the Shar field (``<shar_field>.000000.tar``, ...).
    on_error
        Called with (``shard [id]``, exception) for every item or shard that fails.

    Returns
    -------
        A :class:`~focalcodec.pipeline.tokenize.TokenizeReport`; ``total`` counts the
        items seen in this rank's shards, ``outputs`` the sink files (rank 0).
    """
    check_options(options, dist.device)
    out = Path(out)
    shards = source.shards()
    prepare = None
    if options.fmt == "shar":
        from .sinks import prepare_shar

        prepare = prepare_shar(source, out, options, token_meta(codec))
    folder_options = replace(
        options, fmt="npy" if options.fmt == "shar" else options.fmt
    )
    open_output(out, codec, folder_options, dist, prepare)
    mine = [s for s in shards if s.index % dist.world_size == dist.rank]
    names = {s.name for s in mine}
    places = stored_places(out)
    columns = None
    if options.fmt == "parquet":  # the source's scalar fields, one column each
        from .sinks import source_columns

        columns = source_columns(source, shards)
    writer = TokenWriter(
        out,
        rank=dist.rank,
        shard_size=options.shard_size,
        owns=lambda i: places.get(i, ("",))[0] in names,
        columns=columns,
    )
    skip = skip_sets(writer.done, places)
    todo = [s for s in mine if not _complete(s, skip)]
    report = TokenizeReport(already_done=len(writer.done))
    job = _SourceJob(codec, folder_options, dist, writer, report, on_error)
    job.complete(lambda: job.run_source(source, todo, skip))
    report.total = report.already_done + writer.written + len(report.failed)
    if dist.is_main:
        job.index(out, source_order(stored_places(out), shards))
        report.outputs = _sinks(out, codec, options, source, shards)
    return report


def _complete(shard: Shard, skip: dict[str, set[str]]) -> bool:
    """A shard whose every item is stored (known only where the source counts them)."""
    return (
        shard.num_items is not None and len(skip.get(shard.name, ())) >= shard.num_items
    )


def _sinks(
    out: Path, codec: Any, options: TokenizeOptions, source, shards
) -> list[str]:
    if options.fmt == "parquet":
        return write_card(out, source.describe(), options.command)
    if options.fmt == "shar":
        from .sinks import write_shar

        return write_shar(out, source, shards, options, token_meta(codec))
    return []


class _SourceJob(TokenizeJob):
    """The job, fed by a stream of batches, long items and failures."""

    def run_source(self, source: Source, shards: list[Shard], skip: dict) -> None:
        from tqdm import tqdm

        rate, options = self.rate, self.options
        stream = ShardStream(
            source,
            shards,
            skip,
            rate,
            self.min_samples,
            round(options.long_seconds * rate),
        )
        batches = stream_batches(
            stream,
            budget=round(options.batch_seconds * rate),
            max_items=options.max_items,
            single=self.exact,
            workers=self.workers(len(shards)),
        )
        show = self.show
        with tqdm(unit="s", disable=not show, file=sys.stderr) as bar:
            for out in batches:
                if isinstance(out, StreamBatch):
                    self.run_batch(out, bar)
                elif isinstance(out, LongItem):
                    self.run_long_item(out.item, show)
                else:  # an item or a shard that failed
                    self.fail(out.name, out.error)

    def run_batch(self, batch: StreamBatch, bar) -> None:
        try:
            all_toks = self.encode(batch.sig, batch.lengths)
        except Exception as exc:  # e.g. out of memory: the batch fails, not the job
            for name in batch.names:
                self.fail(name, exc)
            return
        sizes = batch.lengths.tolist()
        rows = zip(batch.records, batch.names, all_toks, sizes, strict=True)
        for record, name, toks, n in rows:
            self.keep(record, name, n, toks)
        bar.update(round(sum(sizes) / self.rate))

    def run_long_item(self, item: Item, show: bool) -> None:
        """An item longer than ``long_seconds``: its file or bytes read piece by piece
        (:meth:`TokenizeJob.encode_long`), so only its encoded bytes are held whole."""
        try:
            source = long_reader_source(item.audio, item.name)
            n, toks = self.encode_long(source, item.name, show)
        except Exception as exc:
            self.fail(item.name, exc)
            return
        self.keep(item.record(), item.name, n, toks)

    def keep(self, record: dict, name: str, n: int, toks: np.ndarray) -> None:
        try:
            self.store(record, n, toks)
        except InputError as exc:  # a repeated id: one line, the run goes on
            self.fail(name, exc)
