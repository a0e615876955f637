"""Batch work for the file verbs: pairing inputs with outputs, running, reporting.

A directory input is searched recursively and its tree is mirrored under the output
directory; ``-`` means stdin or stdout. A bad file is reported on one line and the batch
goes on; the exit status is 1 when anything failed.

Every decision about an output is made on its resolved path before anything is written
(see :mod:`focalcodec.files.atomic`): an output that is one of the inputs (any spelling,
symlink or hard link) is refused even with ``--force``, an existing one without it, and
an output folder inside an input folder is left out of that input's scan. Outputs are
written atomically; ``--skip-existing`` lets an interrupted batch finish where it
stopped. The work itself is the library's: each item becomes a
:class:`~focalcodec.pipeline.files.Job` for :mod:`focalcodec.pipeline.files`, which
handles files of any length with bounded memory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AudioError, FocalCodecError, UsageError
from ..files.atomic import file_id, resolve
from ..files.audio import audio_format, check_writable
from ..files.manifest import find_files
from ..pipeline.files import Job
from ..runtime import release_free_memory
from .progress import FileBar, Tally, bars_wanted
from .report import error, message, printable, write_line

__all__ = [
    "Item",
    "Outcome",
    "check_audio_output",
    "job_for",
    "out_suffix",
    "output_rate",
    "per_item",
    "plan",
    "read_input",
    "run_batch",
    "run_files",
]

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class Item:
    """One unit of batch work: ``src`` None means stdin, ``dst`` None means stdout."""

    src: Path | None
    dst: Path | None
    error: str | None = None
    keep: tuple = ()  # inputs that this item's output must never be
    skip: bool = False  # the output is already there and --skip-existing was given
    seconds: float = 0.0  # audio handled, for the summary
    size: int = 0  # bytes written, for the summary
    bars: bool = False  # draw a progress bar if the file is long

    @property
    def name(self) -> str:
        return "<stdin>" if self.src is None else str(self.src)


Outcome = list  # one entry per item of a chunk: None (done) or the exception raised


# ---------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------


def plan(
    inputs: list[str],
    output: str | None,
    suffixes: Iterable[str],
    out_suffix: str,
    *,
    force: bool,
    skip_existing: bool = False,
    protect: Iterable[str | os.PathLike] = (),
) -> list[Item]:
    """Pair every input file with its output path.

    A single input file goes to ``output`` itself unless ``output`` is an existing
    directory or ends with a path separator. Otherwise ``output`` is a directory: a file
    input lands there under its own name, and a directory input's tree is mirrored there
    (an output folder inside it is left out of the scan). Inputs that cannot be
    processed come back as items with an ``error``; ``protect`` lists more files that
    no output may be (references, banks).
    """
    if output is None:
        raise UsageError("an output is required: -o FILE or -o DIR")
    suffixes = tuple(s.lower() for s in suffixes)
    single = len(inputs) == 1 and (inputs[0] == "-" or not Path(inputs[0]).is_dir())
    to_dir = not (output == "-" or (single and not _names_dir(output)))
    if output == "-" and not single:
        raise UsageError("-o - (stdout) takes exactly one input file")
    items: list[Item] = []
    for text in inputs:
        if text == "-":
            name = Path("stdin").with_suffix(out_suffix)
            items.append(Item(None, Path(output) / name if to_dir else _out(output)))
            continue
        src = Path(text)
        if src.is_dir():
            exclude = _tree_exclude(src, output, suffixes, out_suffix)
            problems: list[tuple[str, str]] = []
            files = find_files(src, suffixes, exclude=exclude, problems=problems)
            # Unreadable folders, links out of the tree: one error line each.
            items += [Item(Path(path), None, why) for path, why in problems]
            if not files and not problems:
                items.append(Item(src, None, f"no {'/'.join(suffixes)} files found"))
            for path in files:
                rel = path.relative_to(src).with_suffix(out_suffix)
                items.append(Item(path, Path(output) / rel))
        else:
            dst = Path(output) / src.with_suffix(out_suffix).name if to_dir else None
            item = Item(src, dst if to_dir else _out(output))
            if not src.exists():  # reported now, before a model is loaded for it
                item.error = "no such file"
            items.append(item)
    _mark_conflicts(items, force, skip_existing, tuple(protect))
    return items


def _names_dir(output: str) -> bool:
    return Path(output).is_dir() or output.endswith(("/", os.sep))


def _out(output: str) -> Path | None:
    return None if output == "-" else Path(output)


def _tree_exclude(
    src: Path, output: str, suffixes: tuple, out_suffix: str
) -> list[Path]:
    """Folders to leave out of a directory input's scan: the output folder, when it
    lies inside the input (compared resolved, symlinks included)."""
    root, out_root = resolve(src), resolve(output)
    if out_root != root:
        return [out_root]
    if out_suffix.lower() in suffixes:
        raise UsageError(
            f"-o {output} is the input folder {src}: the outputs would replace the "
            "inputs; write them to another folder"
        )
    return []


def _mark_conflicts(
    items: list[Item], force: bool, skip_existing: bool, protect: tuple
) -> None:
    """Decide every output on its resolved path, before anything is written."""
    inputs = [i.src for i in items if i.src is not None] + [Path(p) for p in protect]
    paths = {resolve(p): p for p in inputs}
    ids = {fid: p for p in inputs if (fid := file_id(p)) is not None}
    seen: dict[Path, str] = {}
    for item in items:
        item.keep = ((item.src,) if item.src is not None else ()) + protect
        if item.error or item.dst is None:
            continue
        key = resolve(item.dst)
        src = paths.get(key) or ids.get(file_id(key))
        if key in seen:
            item.error = f"output {item.dst} is also the output of {seen[key]}"
        elif src is not None:
            item.error = (
                f"output {item.dst} is the input {src}; inputs are never overwritten, "
                "even with --force"
            )
        elif key.is_dir():
            item.error = f"output {item.dst} is an existing directory"
        elif key.exists() and skip_existing:
            item.skip = True
        elif key.exists() and not force:
            item.error = (
                f"output {item.dst} exists; pass --force to overwrite it, or "
                "--skip-existing to keep it"
            )
        seen[key] = item.name


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


def per_item(work: Callable[[Item], None]) -> Callable[[list[Item]], Outcome]:
    """Turn a one-item function into a chunk function for :func:`run_batch`."""

    def run(chunk: list[Item]) -> Outcome:
        outcome: Outcome = []
        for item in chunk:
            try:
                work(item)
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)
        return outcome

    return run


def run_batch(
    items: list[Item],
    work: Callable[[list[Item]], Outcome],
    *,
    quiet: bool,
    batch_size: int = 1,
    unit: str = "file",
    verb: str | None = None,
) -> int:
    """Run ``work`` on chunks of items, report each failure on one line, return a status.

    ``work`` returns, per item of its chunk, None or the exception that item raised.
    Progress bars are drawn when stderr is a terminal (see :mod:`.progress`); with a
    ``verb`` ("encoded"), a run that succeeds ends with a one-line summary.
    """
    from tqdm import tqdm

    failed = 0
    tally = Tally(skipped=sum(i.skip for i in items))
    for item in items:
        if item.error:
            error(f"{printable(item.name)}: {item.error}")
            failed += 1
    todo = [i for i in items if not i.error and not i.skip]
    bars = bars_wanted(quiet)
    bar = tqdm(
        total=len(todo), unit=unit, disable=not bars or len(todo) < 2, file=sys.stderr
    )
    with bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for item in chunk:
                item.bars = bars
            for item, exc in zip(chunk, work(chunk), strict=True):
                if exc is not None:
                    failed += 1
                    _report(item, exc)
                else:
                    tally.add(item.seconds, item.size)
            bar.update(len(chunk))
            release_free_memory()  # files of different lengths fragment the heap
    if failed and len(items) > 1:
        error(f"{failed} of {len(items)} {unit}s failed")
    if verb and not failed and not quiet:
        write_line(tally.line(verb))
    return EXIT_FAILED if failed else EXIT_OK


def _report(item: Item, exc: BaseException) -> None:
    if os.environ.get("FOCALCODEC_DEBUG"):
        raise exc
    known = isinstance(exc, (FocalCodecError, OSError))
    kind = "" if known else f"{type(exc).__name__}: "
    name = printable(item.name)
    text = message(exc, item.name)
    prefix = "" if text.startswith(name) else f"{name}: "
    error(f"{prefix}{kind}{text}")


def read_input(item: Item) -> Any:
    """The item's source: its path, or stdin's binary stream (``-``)."""
    return sys.stdin.buffer if item.src is None else item.src


def job_for(item: Item) -> Job:
    """The pipeline job of an item: ``-`` is stdin or stdout, with a progress bar."""
    dest = sys.stdout.buffer if item.dst is None else item.dst
    bar = FileBar(item.bars, item.name)
    return Job(read_input(item), dest, item.name, item.keep, bar)


def run_files(
    items: list[Item],
    process: Callable[[list[Job]], list],
    *,
    quiet: bool,
    verb: str,
    batch_size: int = 1,
) -> int:
    """Run a pipeline on the items' jobs, chunk by chunk, and report (:func:`run_batch`).

    ``process`` takes a chunk of jobs and returns, per job, a
    :class:`~focalcodec.pipeline.files.FileReport` or the exception that stopped it.
    """

    def work(chunk: list[Item]) -> Outcome:
        jobs = [job_for(item) for item in chunk]
        try:
            results = process(jobs)
        finally:
            for job in jobs:
                job.progress.close()
        outcome: Outcome = []
        for item, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                outcome.append(result)
                continue
            item.seconds, item.size = result.seconds, result.size
            outcome.append(None)
        return outcome

    return run_batch(items, work, quiet=quiet, batch_size=batch_size, verb=verb)


def out_suffix(args: argparse.Namespace) -> str:
    """Suffix for outputs in a directory; a single -o FILE keeps its own suffix."""
    return "." + (args.format or "wav")


def output_rate(args: argparse.Namespace) -> int | str | None:
    """``--sample-rate`` for the pipelines: Hz, ``"source"`` or None."""
    if args.sample_rate in (None, "source"):
        return args.sample_rate
    return _sample_rate(args.sample_rate)


def _sample_rate(wanted: str) -> int:
    try:
        target = int(wanted)
    except ValueError:
        raise UsageError(f"--sample-rate {wanted!r}: give Hz or 'source'") from None
    if not 1000 <= target <= 768_000:
        raise UsageError(f"--sample-rate {wanted!r} must be in [1000, 768000] Hz")
    return target


def check_audio_output(args: argparse.Namespace) -> None:
    """Checks of the audio output options, before any work (usage errors, status 2).

    ``--sample-rate`` must be a plausible rate or ``source``, one that the output
    format can be written at; a single -o FILE needs an audio suffix, or --format,
    and they must agree.
    """
    rate = output_rate(args)
    out = args.output
    fmt = args.format
    single = not (
        out is None
        or out == "-"
        or Path(out).is_dir()
        or out.endswith(("/", "\\"))
        or len(args.inputs) > 1
        or any(Path(i).is_dir() for i in args.inputs)
    )
    if single and not Path(out).suffix:
        if not args.format:
            raise UsageError(
                f"-o {out}: add an audio suffix (.wav, .flac, .ogg, .mp3), pass "
                "--format, or end it with / to make it a directory"
            )
    elif single:
        try:
            fmt = audio_format(out).lower()
        except AudioError as exc:
            raise UsageError(str(exc)) from None
        if args.format and args.format != fmt:
            raise UsageError(f"-o {out} does not match --format {args.format}")
    if isinstance(rate, int):
        try:
            check_writable(audio_format(f"x.{fmt or 'wav'}"), rate)
        except AudioError as exc:
            raise UsageError(f"--sample-rate: {exc}") from None
