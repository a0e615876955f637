"""Tokenize a corpus into a token folder: batched, resumable, on one or many processes.

The engine behind ``focalcodec tokenize`` (and usable from Python). Under ``torchrun``
every process takes the items whose id hashes to its rank (:func:`owner_rank`), so the
split depends neither on the order of the items nor on which are already done; each
rank writes its own data files and journal (:mod:`focalcodec.tokens.dataset`) and can be
killed and restarted on its own. When all ranks are through, rank 0 verifies every file
and writes one index in source order.

Per process, audio is decoded in DataLoader workers (:mod:`focalcodec.pipeline.loader`) and
encoded in length-sorted padded buckets (:meth:`FocalCodec.sig_to_toks_padded`) on a GPU,
item by item on a CPU (where batching is slower) or wherever ``exact=True``. Items longer than ``long_seconds`` go through
:func:`focalcodec.streaming.longform.encode_long`, with memory bounded by its window.

Corpora in containers (Parquet, ``save_to_disk``, the Hub, WebDataset tars, Lhotse
manifests and Shar) go through :func:`focalcodec.pipeline.sources.tokenize_source`,
which splits the work by shard and drives the same job (:class:`TokenizeJob`) from a
stream.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FocalCodecError, FormatError, InputError
from ..files.manifest import Entry
from ..runtime import DistInfo, any_rank, autocast, check_precision
from ..tokens.card import write_card
from ..tokens.dataset import (
    FinishReport,
    TokenWriter,
    finish,
    open_folder,
    owner_rank,
    token_meta,
)
from .compress import min_samples
from .loader import AudioDataset, audio_loader, estimate_length, plan_buckets

__all__ = [
    "OnError",
    "TokenizeJob",
    "TokenizeOptions",
    "TokenizeReport",
    "check_options",
    "open_output",
    "tokenize_entries",
]

#: Called with (item name, exception) for every item that fails.
OnError = Callable[[str, BaseException], None]


@dataclass
class TokenizeOptions:
    """How to tokenize; the command line's options.

    Attributes
    ----------
    fmt
        ``npy``, ``parquet`` (with a dataset card) or ``shar`` (a Lhotse Shar field
        next to a Shar source, plus an npy token folder; see
        :func:`focalcodec.pipeline.sources.tokenize_source`).
    exact
        True: encode item by item (each item's solo tokens, bit for bit); False: in
        length-sorted padded buckets; None (default): item by item on a CPU and in
        buckets elsewhere. On a CPU the products are already as fast as they get for one
        item, and padding only adds work (``docs/tokenize.md``, Speed); a GPU needs
        batches to be busy.
    batch_seconds
        Padded audio per bucket (items x longest item), in seconds.
    max_items
        At most this many items per bucket (None: no limit).
    workers
        DataLoader worker processes that decode audio (None: from the CPU count).
    precision
        ``fp32`` or ``bf16`` (autocast), for GPUs and CPUs with native bf16
        (AVX512-BF16, AMX): about twice the speed of fp32 on such a CPU, with some
        tokens changed (``docs/tokenize.md``, Speed).
    shard_size
        Items per data file.
    long_seconds
        Items longer than this are encoded alone in long-form windows.
    force
        Start the output folder over.
    quiet
        No progress bars.
    shar_field
        ``shar`` format: the field's file stem (``codes`` -> ``codes.000000.tar``).
    command
        The command line that made the folder, for the dataset card.
    """

    fmt: str = "npy"
    exact: bool | None = None
    batch_seconds: float = 60.0
    max_items: int | None = None
    workers: int | None = None
    precision: str = "fp32"
    shard_size: int = 256
    long_seconds: float = 120.0
    force: bool = False
    quiet: bool = True
    shar_field: str = "codes"
    command: str | None = None


@dataclass
class TokenizeReport:
    """What one process did (``items`` and ``damaged`` are filled on rank 0)."""

    total: int = 0
    already_done: int = 0
    written: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    items: int | None = None
    missing: int = 0
    damaged: list[str] = field(default_factory=list)
    any_failed: bool = False
    outputs: list[str] = field(default_factory=list)


def tokenize_entries(
    entries: Sequence[Entry],
    out: str | os.PathLike,
    codec: Any,
    options: TokenizeOptions,
    dist: DistInfo,
    on_error: OnError | None = None,
) -> TokenizeReport:
    """Tokenize ``entries`` into the token folder ``out``; call on every rank.

    Parameters
    ----------
    entries
        The corpus (see :func:`focalcodec.files.manifest.scan`), the same on every rank.
    out
        The token folder.
    codec
        The model, already on ``dist.device``.
    options
        See :class:`TokenizeOptions`.
    dist
        This process's place in the run (:func:`focalcodec.runtime.setup`).
    on_error
        Called with (item name, exception) for every item that fails.

    Returns
    -------
        A :class:`TokenizeReport`; items that failed are listed, not raised.
    """
    check_options(options, dist.device)
    if options.fmt == "shar":
        raise InputError("the shar format needs a Lhotse Shar source")
    out = Path(out)
    open_output(out, codec, options, dist)
    mine = [e for e in entries if owner_rank(e.id, dist.world_size) == dist.rank]
    writer = TokenWriter(
        out,
        rank=dist.rank,
        shard_size=options.shard_size,
        owns=lambda i: owner_rank(i, dist.world_size) == dist.rank,
    )
    todo = [e for e in mine if e.id not in writer.done]
    report = TokenizeReport(total=len(mine), already_done=len(mine) - len(todo))
    job = TokenizeJob(codec, options, dist, writer, report, on_error)
    job.complete(lambda: job.run(todo))
    if dist.is_main:
        report.missing = job.index(out, [e.id for e in entries]).missing
        if options.fmt == "parquet":
            report.outputs = write_card(out, None, options.command)
    return report


def check_options(options: TokenizeOptions, device: torch.device) -> None:
    """Refuse ``options`` that cannot run on ``device`` (an :class:`InputError`):
    non-positive seconds, an unknown precision, bf16 where it would be emulated."""
    if not options.batch_seconds > 0 or not options.long_seconds > 0:
        raise InputError("batch_seconds and long_seconds must be positive")
    if options.precision not in ("fp32", "bf16"):
        raise InputError(f"precision {options.precision!r}: use fp32 or bf16")
    check_precision(options.precision, device)  # the one refusal of emulated bf16


def open_output(
    out: Path,
    codec: Any,
    options: TokenizeOptions,
    dist: DistInfo,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Create or check the token folder ``out`` for ``codec``; call on every rank.

    Rank 0 creates or checks it (after ``prepare``, if any); the others wait, then
    check it too. An error on rank 0 is raised on every rank.
    """
    meta = token_meta(codec)
    error: FocalCodecError | None = None
    if dist.is_main:
        try:
            if prepare is not None:
                prepare()
            open_folder(out, meta, fmt=options.fmt, force=options.force)
        except FocalCodecError as exc:
            error = exc
    # A collective: also the barrier that keeps other ranks out until rank 0 is done.
    if any_rank(error is not None, dist.device):
        raise error or FormatError(f"{out}: rank 0 could not open the output folder")
    if not dist.is_main:
        open_folder(out, meta, fmt=options.fmt)


def _record(entry: Entry, num_samples: int, rate: int) -> dict[str, Any]:
    record = {"id": entry.id, "path": str(entry.path), **entry.meta}
    record.update(num_samples=int(num_samples), duration=num_samples / rate)
    return record


@dataclass
class TokenizeJob:
    """One process's share of the work, from decoded audio to written tokens.

    :func:`tokenize_entries` runs it on a list of files (:meth:`run`); the container
    sources of :mod:`focalcodec.pipeline.sources` feed it from a stream.
    """

    codec: Any
    options: TokenizeOptions
    dist: DistInfo
    writer: TokenWriter
    report: TokenizeReport
    on_error: OnError | None

    @property
    def rate(self) -> int:
        """The codec's input sample rate, in Hz."""
        return int(self.codec.sample_rate_input)

    @property
    def min_samples(self) -> int:
        """The fewest samples an item may have (shorter ones fail)."""
        return min_samples(self.codec)

    @property
    def exact(self) -> bool:
        """Encode item by item: ``options.exact``, else only on a CPU."""
        exact = self.options.exact
        return self.dist.device.type == "cpu" if exact is None else exact

    @property
    def show(self) -> bool:
        """Draw progress bars: not quiet, on rank 0, to a terminal."""
        return not self.options.quiet and self.dist.is_main and sys.stderr.isatty()

    def workers(self, cap: int | None = None) -> int:
        """Decoding workers: as asked, else from the CPU count (at most ``cap``: a
        stream worker without a shard would only idle)."""
        workers = self.options.workers
        if workers is None:
            workers = min(4, max(1, (os.cpu_count() or 1) // self.dist.world_size - 1))
            if cap is not None:
                workers = min(workers, max(cap, 1))
        return workers

    def complete(self, work: Callable[[], None]) -> None:
        """Run ``work``, then flush the writer and learn whether any rank failed (a
        collective: call on every rank)."""
        self.report.damaged = list(self.writer.damaged)
        try:
            work()
        finally:
            self.writer.flush()
        self.report.written = self.writer.written
        self.report.any_failed = any_rank(bool(self.report.failed), self.dist.device)

    def index(self, out: Path, order: Iterable[str]) -> FinishReport:
        """Rank 0, after :meth:`complete`: merge every rank's journal into the index
        of ``out`` (ids of ``order`` first) and report the damaged files."""
        done = finish(out, order)
        self.report.items = done.items
        self.report.damaged = list(dict.fromkeys(self.report.damaged + done.damaged))
        return done

    def failed(self, entry: Entry, exc: BaseException) -> None:
        self.fail(str(entry.path), exc)

    def fail(self, name: str, exc: BaseException) -> None:
        self.report.failed.append((name, exc))
        if self.on_error is not None:
            self.on_error(name, exc)

    def done(self, entry: Entry, num_samples: int, toks: np.ndarray) -> None:
        self.store(_record(entry, num_samples, self.rate), num_samples, toks)

    def store(self, record: dict, num_samples: int, toks: np.ndarray) -> None:
        record = {**record, "num_samples": int(num_samples)}
        record["duration"] = num_samples / self.rate
        self.writer.add(record, toks)
        self.report.seconds += num_samples / self.rate

    def run(self, todo: list[Entry]) -> None:
        """Buckets of ordinary items, then the long ones, under one progress bar."""
        from tqdm import tqdm

        rate = self.rate
        lengths = [estimate_length(e.path, rate, e.meta.get("duration")) for e in todo]
        limit = self.options.long_seconds * rate
        short = [i for i, n in enumerate(lengths) if n <= limit]
        longer = [i for i, n in enumerate(lengths) if n > limit]
        show = self.show
        total = round(sum(lengths) / rate)
        with tqdm(total=total, unit="s", disable=not show, file=sys.stderr) as bar:
            self.run_buckets(todo, short, lengths, bar)
            for i in longer:
                self.run_long(todo[i], show)
                bar.update(round(lengths[i] / rate))

    def run_buckets(self, todo, chosen: list[int], lengths: list[int], bar) -> None:
        budget = round(self.options.batch_seconds * self.rate)
        planned = plan_buckets(
            [lengths[i] for i in chosen], budget, self.options.max_items
        )
        buckets = [[chosen[k] for k in bucket] for bucket in planned]
        dataset = AudioDataset(
            [e.path for e in todo],
            self.rate,
            self.min_samples,
            max_samples=round(self.options.long_seconds * self.rate),
        )
        workers = self.workers()
        cuda = self.dist.device.type == "cuda"
        for batch in audio_loader(dataset, buckets, workers=workers, pin_memory=cuda):
            for i, exc in batch.errors:
                self.failed(todo[i], exc)
            if not batch.indices:
                continue
            try:
                all_toks = self.encode(batch.sig, batch.lengths)
            except (
                Exception
            ) as exc:  # e.g. out of memory: the bucket fails, not the job
                for i in batch.indices:
                    self.failed(todo[i], exc)
                continue
            sizes = batch.lengths.tolist()
            for i, toks, n in zip(batch.indices, all_toks, sizes, strict=True):
                self.done(todo[i], n, toks)
            bar.update(round(sum(sizes) / self.rate))

    def encode(self, sig: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """Tokens of a padded batch (B, N) with real lengths (B,), one array per item."""
        device, codec = self.dist.device, self.codec
        sig = sig.to(device, non_blocking=True)
        sizes = lengths.tolist()
        with torch.inference_mode(), autocast(device, self.options.precision):
            if self.exact or not hasattr(codec, "sig_to_toks_padded"):
                return [
                    codec.sig_to_toks(sig[i : i + 1, :n])[0]
                    .to("cpu", torch.int64)
                    .numpy()
                    for i, n in enumerate(sizes)
                ]
            toks, counts = codec.sig_to_toks_padded(sig, lengths.to(device))
        toks = toks.to("cpu", torch.int64).numpy()
        return [toks[i, :c] for i, c in enumerate(counts.tolist())]

    def run_long(self, entry: Entry, show: bool) -> None:
        """One long item through :func:`focalcodec.pipeline.longaudio.iter_encode` (read,
        resampled and encoded piece by piece: flat memory), with its own bar."""
        try:
            num_samples, toks = self.encode_long(
                entry.path, Path(entry.path).name, show
            )
            self.done(entry, num_samples, toks)
        except Exception as exc:
            self.failed(entry, exc)

    def encode_long(self, source: Any, name: str, show: bool) -> tuple[int, np.ndarray]:
        """(samples, tokens (L,) int64) of an audio file or file object, read piece by
        piece by :class:`~focalcodec.files.audio.AudioReader`."""
        from tqdm import tqdm

        from ..files.audio import AudioReader
        from .longaudio import iter_encode

        bar = tqdm(total=100, unit="%", desc=name, leave=False, disable=not show)

        def progress(fraction: float) -> None:
            bar.n = round(100 * fraction)
            bar.refresh()

        precision = self.options.precision
        reader_name = None if isinstance(source, (str, os.PathLike)) else name
        with AudioReader(source, self.rate, name=reader_name) as reader, bar:
            with torch.inference_mode(), autocast(self.dist.device, precision):
                pieces = list(iter_encode(self.codec, reader, progress))
            num_samples = reader.num_samples
        return num_samples, np.concatenate(pieces).astype(np.int64)
