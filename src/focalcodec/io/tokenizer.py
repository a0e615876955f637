"""Tokenize a corpus into a token folder: batched, resumable, on one or many processes.

The engine behind ``focalcodec tokenize`` (and usable from Python). Under ``torchrun``
every process takes the items whose id hashes to its rank (:func:`owner_rank`), so the
split depends neither on the order of the items nor on which are already done; each
rank writes its own data files and journal (:mod:`focalcodec.io.tokens`) and can be
killed and restarted on its own. When all ranks are through, rank 0 verifies every file
and writes one index in source order.

Per process, audio is decoded in DataLoader workers (:mod:`focalcodec.io.loader`) and
encoded in length-sorted padded buckets (:meth:`FocalCodec.sig_to_toks_padded`) on a GPU,
item by item on a CPU (where batching is slower) or wherever ``exact=True``. Items longer than ``long_seconds`` go through
:func:`focalcodec.streaming.longform.encode_long`, with memory bounded by its window.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FocalCodecError, FormatError, InputError
from ..runtime import DistInfo, any_rank, native_bf16
from .loader import AudioDataset, audio_loader, estimate_length, plan_buckets
from .manifest import Entry
from .tokens import TokenWriter, finish, open_folder, owner_rank, token_meta

__all__ = ["TokenizeOptions", "TokenizeReport", "tokenize_entries"]


@dataclass
class TokenizeOptions:
    """How to tokenize; the command line's options.

    Attributes
    ----------
    fmt
        ``npy`` or ``parquet``.
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


def tokenize_entries(
    entries: Sequence[Entry],
    out: str | os.PathLike,
    codec: Any,
    options: TokenizeOptions,
    dist: DistInfo,
    on_error: Callable[[str, BaseException], None] | None = None,
) -> TokenizeReport:
    """Tokenize ``entries`` into the token folder ``out``; call on every rank.

    Parameters
    ----------
    entries
        The corpus (see :func:`focalcodec.io.manifest.scan`), the same on every rank.
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
    _check_options(options, dist.device)
    out = Path(out)
    _open_output(out, codec, options, dist)
    mine = [e for e in entries if owner_rank(e.id, dist.world_size) == dist.rank]
    writer = TokenWriter(
        out,
        rank=dist.rank,
        shard_size=options.shard_size,
        owns=lambda i: owner_rank(i, dist.world_size) == dist.rank,
    )
    todo = [e for e in mine if e.id not in writer.done]
    report = TokenizeReport(total=len(mine), already_done=len(mine) - len(todo))
    report.damaged = list(writer.damaged)

    job = _Job(codec, options, dist, writer, report, on_error)
    try:
        job.run(todo)
    finally:
        writer.flush()
    report.written = writer.written
    report.any_failed = any_rank(bool(report.failed), dist.device)
    if dist.is_main:
        done = finish(out, [e.id for e in entries])
        report.items, report.missing = done.items, done.missing
        report.damaged = list(dict.fromkeys(report.damaged + done.damaged))
    return report


def _check_options(options: TokenizeOptions, device: torch.device) -> None:
    if not options.batch_seconds > 0 or not options.long_seconds > 0:
        raise InputError("batch_seconds and long_seconds must be positive")
    if options.precision not in ("fp32", "bf16"):
        raise InputError(f"precision {options.precision!r}: use fp32 or bf16")
    if options.precision == "bf16" and not native_bf16(device):
        raise InputError(
            f"precision bf16 needs native bf16 ({device} would emulate it, gaining "
            "nothing over fp32); use a GPU from Ampere on or a CPU with AVX512-BF16 or AMX"
        )


def _open_output(out: Path, codec: Any, options: TokenizeOptions, dist: DistInfo):
    """Rank 0 creates or checks the folder; the others wait, then check it too."""
    meta = token_meta(codec)
    error: FocalCodecError | None = None
    if dist.is_main:
        try:
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


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass
class _Job:
    """One process's share of the work, from decoded audio to written tokens."""

    codec: Any
    options: TokenizeOptions
    dist: DistInfo
    writer: TokenWriter
    report: TokenizeReport
    on_error: Callable[[str, BaseException], None] | None

    @property
    def rate(self) -> int:
        return int(self.codec.sample_rate_input)

    def failed(self, entry: Entry, exc: BaseException) -> None:
        self.report.failed.append((str(entry.path), exc))
        if self.on_error is not None:
            self.on_error(str(entry.path), exc)

    def done(self, entry: Entry, num_samples: int, toks: np.ndarray) -> None:
        self.writer.add(_record(entry, num_samples, self.rate), toks)
        self.report.seconds += num_samples / self.rate

    def run(self, todo: list[Entry]) -> None:
        """Buckets of ordinary items, then the long ones, under one progress bar."""
        from tqdm import tqdm

        rate = self.rate
        lengths = [estimate_length(e.path, rate, e.meta.get("duration")) for e in todo]
        limit = self.options.long_seconds * rate
        short = [i for i, n in enumerate(lengths) if n <= limit]
        longer = [i for i, n in enumerate(lengths) if n > limit]
        show = not self.options.quiet and self.dist.is_main and sys.stderr.isatty()
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
            [e.path for e in todo], self.rate, _min_samples(self.codec)
        )
        workers = self.options.workers
        if workers is None:
            workers = min(4, max(1, (os.cpu_count() or 1) // self.dist.world_size - 1))
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
        with torch.inference_mode(), _autocast(device, self.options.precision):
            exact = self.options.exact
            if exact is None:
                exact = device.type == "cpu"
            if exact or not hasattr(codec, "sig_to_toks_padded"):
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
        """One long item through :func:`focalcodec.io.longaudio.iter_encode` (read,
        resampled and encoded piece by piece: flat memory), with its own bar."""
        from tqdm import tqdm

        from .audio import AudioReader
        from .longaudio import iter_encode

        name = Path(entry.path).name
        bar = tqdm(total=100, unit="%", desc=name, leave=False, disable=not show)

        def progress(fraction: float) -> None:
            bar.n = round(100 * fraction)
            bar.refresh()

        try:
            precision = self.options.precision
            with AudioReader(entry.path, self.rate) as reader, bar:
                with torch.inference_mode(), _autocast(self.dist.device, precision):
                    pieces = list(iter_encode(self.codec, reader, progress))
                num_samples = reader.num_samples
            self.done(entry, num_samples, np.concatenate(pieces).astype(np.int64))
        except Exception as exc:
            self.failed(entry, exc)


def _min_samples(codec: Any) -> int:
    from .compress import min_samples

    return min_samples(codec)
