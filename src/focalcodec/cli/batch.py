"""Batch work for the file verbs: pairing inputs with outputs, running, reporting.

A directory input is searched recursively and its tree is mirrored under the output
directory; ``-`` means stdin or stdout. A bad file is reported on one line and the batch
goes on; the exit status is 1 when anything failed. Outputs are written atomically and
never replace an existing file without ``--force`` (see :mod:`focalcodec.io.atomic`).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, FocalCodecError, UsageError
from ..io.atomic import atomic_write
from ..io.audio import audio_format, load_audio, resample, write_audio
from ..io.compress import encode_batch, prepare_signal
from ..io.manifest import find_files
from .report import error, message

__all__ = [
    "Item",
    "Outcome",
    "check_audio_output",
    "encode_chunk",
    "out_suffix",
    "per_item",
    "plan",
    "read_input",
    "run_batch",
    "save_audio",
    "write_output",
]

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class Item:
    """One unit of batch work: ``src`` None means stdin, ``dst`` None means stdout."""

    src: Path | None
    dst: Path | None
    error: str | None = None
    record: dict | None = None

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
) -> list[Item]:
    """Pair every input file with its output path.

    A single input file goes to ``output`` itself unless ``output`` is an existing
    directory or ends with a path separator. Otherwise ``output`` is a directory: a file
    input lands there under its own name, and a directory input's tree is mirrored there.
    Inputs that cannot be processed come back as items with an ``error``.
    """
    if output is None:
        raise UsageError("an output is required: -o FILE or -o DIR")
    suffixes = tuple(suffixes)
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
            files = find_files(src, suffixes, exclude=[output] if to_dir else [])
            if not files:
                items.append(Item(src, None, f"no {'/'.join(suffixes)} files found"))
            for path in files:
                rel = path.relative_to(src).with_suffix(out_suffix)
                items.append(Item(path, Path(output) / rel))
        else:
            dst = Path(output) / src.with_suffix(out_suffix).name if to_dir else None
            items.append(Item(src, dst if to_dir else _out(output)))
    _mark_conflicts(items, force)
    return items


def _names_dir(output: str) -> bool:
    return Path(output).is_dir() or output.endswith(("/", os.sep))


def _out(output: str) -> Path | None:
    return None if output == "-" else Path(output)


def _mark_conflicts(items: list[Item], force: bool) -> None:
    seen: dict[Path, str] = {}
    for item in items:
        if item.error or item.dst is None:
            continue
        key = item.dst.resolve()
        if key in seen:
            item.error = f"output {item.dst} is also the output of {seen[key]}"
        elif item.dst.exists() and not force:
            item.error = f"output {item.dst} exists; pass --force to overwrite it"
        elif item.src is not None and item.dst.exists() and item.dst.samefile(item.src):
            item.error = f"output {item.dst} is the input itself"
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
) -> int:
    """Run ``work`` on chunks of items, report each failure on one line, return a status.

    ``work`` returns, per item of its chunk, None or the exception that item raised.
    """
    from tqdm import tqdm

    failed = 0
    for item in items:
        if item.error:
            error(f"{item.name}: {item.error}")
            failed += 1
    todo = [i for i in items if not i.error]
    bar = tqdm(
        total=len(todo), unit=unit, disable=quiet or len(todo) < 2, file=sys.stderr
    )
    with bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for item, exc in zip(chunk, work(chunk), strict=True):
                if exc is not None:
                    failed += 1
                    _report(item, exc)
            bar.update(len(chunk))
    if failed and len(items) > 1:
        error(f"{failed} of {len(items)} {unit}s failed")
    return EXIT_FAILED if failed else EXIT_OK


def _report(item: Item, exc: BaseException) -> None:
    if os.environ.get("FOCALCODEC_DEBUG"):
        raise exc
    known = isinstance(exc, (FocalCodecError, OSError))
    kind = "" if known else f"{type(exc).__name__}: "
    text = message(exc)
    prefix = "" if text.startswith(item.name) else f"{item.name}: "
    error(f"{prefix}{kind}{text}")


def read_input(item: Item) -> Any:
    """A path, or a seekable in-memory copy of stdin."""
    return io.BytesIO(sys.stdin.buffer.read()) if item.src is None else item.src


def write_output(item: Item, data: bytes, *, force: bool) -> None:
    """Write bytes to stdout, or atomically to ``item.dst``."""
    if item.dst is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    inputs = () if item.src is None else (item.src,)
    with atomic_write(item.dst, force=force, inputs=inputs) as fileobj:
        fileobj.write(data)


# ---------------------------------------------------------------------------------------
# Audio in and out
# ---------------------------------------------------------------------------------------


def encode_chunk(chunk: list[Item], codec: Any) -> tuple[Outcome, list]:
    """Load, resample and tokenize a chunk of audio items.

    Returns per-item outcomes and, for the items that worked, ``(index, toks,
    num_samples, source_rate)``.
    """
    outcome: Outcome = [None] * len(chunk)
    sigs, meta = [], []
    for i, item in enumerate(chunk):
        try:
            sig, rate = load_audio(read_input(item))
            sigs.append(prepare_signal(sig, rate, codec, item.name))
            meta.append((i, rate))
        except Exception as exc:
            outcome[i] = exc
    try:
        all_toks = encode_batch(sigs, codec) if sigs else []
    except Exception as exc:
        for i, _ in meta:
            outcome[i] = exc
        return outcome, []
    done = [
        (i, t, len(s), r) for (i, r), t, s in zip(meta, all_toks, sigs, strict=True)
    ]
    return outcome, done


def out_suffix(args: argparse.Namespace) -> str:
    """Suffix for outputs in a directory; a single -o FILE keeps its own suffix."""
    return "." + (args.format or "wav")


def save_audio(item: Item, sig: np.ndarray, rate: int, args: argparse.Namespace):
    """Resample as asked and write ``sig`` (N,) to the item's destination."""
    sig, rate = _output_rate(sig, rate, args.sample_rate, item.record or {})
    if args.format or item.dst is None:
        fmt = (args.format or "wav").upper()
    else:
        fmt = audio_format(item.dst)
    buf = io.BytesIO()
    write_audio(buf, sig, rate, format=fmt)
    write_output(item, buf.getvalue(), force=args.force)


def _output_rate(sig: np.ndarray, rate: int, wanted: str | None, record: dict):
    if wanted is None:
        return sig, rate
    if wanted == "source":
        target = int(record.get("source_rate") or rate)
    else:
        try:
            target = int(wanted)
        except ValueError:
            raise UsageError(f"--sample-rate {wanted!r}: give Hz or 'source'") from None
    if target <= 0:
        raise UsageError(f"--sample-rate {wanted!r} must be positive")
    return resample(sig, rate, target), target


def check_audio_output(args: argparse.Namespace) -> None:
    """A single -o FILE needs an audio suffix, or --format, and they must agree."""
    out = args.output
    if out is None or out == "-" or Path(out).is_dir() or out.endswith(("/", "\\")):
        return
    if len(args.inputs) > 1 or any(Path(i).is_dir() for i in args.inputs):
        return
    if not Path(out).suffix:
        if not args.format:
            raise UsageError(
                f"-o {out}: add an audio suffix (.wav, .flac, .ogg, .mp3), pass "
                "--format, or end it with / to make it a directory"
            )
        return
    try:
        fmt = audio_format(out).lower()
    except AudioError as exc:
        raise UsageError(str(exc)) from None
    if args.format and args.format != fmt:
        raise UsageError(f"-o {out} does not match --format {args.format}")
