"""Batch work for the file verbs: pairing inputs with outputs, running, reporting.

A directory input is searched recursively and its tree is mirrored under the output
directory; ``-`` means stdin or stdout. A bad file is reported on one line and the batch
goes on; the exit status is 1 when anything failed.

Every decision about an output is made on its resolved path before anything is written
(see :mod:`focalcodec.io.atomic`): an output that is one of the inputs (any spelling,
symlink or hard link) is refused even with ``--force``, an existing one without it, and
an output folder inside an input folder is left out of that input's scan. Outputs are
written atomically; ``--skip-existing`` lets an interrupted batch finish where it
stopped. Files of any length go through :mod:`focalcodec.io.longaudio` with bounded
memory.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import AudioError, ClippingWarning, FocalCodecError, UsageError
from ..io.atomic import atomic_write, file_id, resolve
from ..io.audio import AudioReader, audio_format
from ..io.compress import encode_batch, prepare_signal
from ..io.longaudio import fits_whole, iter_decode, iter_encode, write_pieces
from ..io.manifest import find_files
from ..runtime import release_free_memory
from .progress import Tally, bars_wanted, file_bar
from .report import error, message, write_line

__all__ = [
    "Item",
    "Outcome",
    "check_audio_output",
    "encode_chunk",
    "open_output",
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
    keep: tuple = ()  # inputs that this item's output must never be
    skip: bool = False  # the output is already there and --skip-existing was given
    seconds: float = 0.0  # audio handled, for the summary
    size: int = 0  # bytes written, for the summary
    bars: bool = False  # draw a progress bar if the file is long
    stdin: bytes | None = field(default=None, repr=False)

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
            files = find_files(src, suffixes, exclude=exclude)
            if not files:
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
            error(f"{item.name}: {item.error}")
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
    text = message(exc)
    prefix = "" if text.startswith(item.name) else f"{item.name}: "
    error(f"{prefix}{kind}{text}")


def read_input(item: Item) -> Any:
    """A path, or a seekable in-memory copy of stdin (read once per item)."""
    if item.src is not None:
        return item.src
    if item.stdin is None:
        item.stdin = sys.stdin.buffer.read()
    data = io.BytesIO(item.stdin)
    data.name = item.name  # for the messages of the audio reader
    return data


@contextmanager
def open_output(item: Item, *, force: bool) -> Iterator[BinaryIO]:
    """A seekable binary file that becomes the item's output when the block succeeds.

    ``dst`` is written atomically (never an input, never an existing file without
    ``force``); stdout gets the bytes of a temporary file once it is complete.
    """
    if item.dst is None:
        with tempfile.TemporaryFile() as fileobj:
            yield fileobj
            item.size = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(0)
            shutil.copyfileobj(fileobj, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return
    with atomic_write(item.dst, force=force, inputs=item.keep) as fileobj:
        yield fileobj
        # The end, not tell(): audio writers seek back to finish their header.
        item.size = fileobj.seek(0, os.SEEK_END)


def write_output(item: Item, data: bytes, *, force: bool) -> None:
    """Write bytes to stdout, or atomically to ``item.dst``."""
    with open_output(item, force=force) as fileobj:
        fileobj.write(data)


# ---------------------------------------------------------------------------------------
# Audio in and out
# ---------------------------------------------------------------------------------------


def open_reader(item: Item, codec: Any) -> AudioReader:
    """The item's audio, read piece by piece at the model's input rate."""
    reader = AudioReader(read_input(item), int(codec.sample_rate_input))
    reader.name = item.name
    item.seconds = reader.num_samples / codec.sample_rate_input
    return reader


def encode_long(item: Item, reader: AudioReader, codec: Any) -> Iterator[np.ndarray]:
    """Token pieces of a long item, with its progress bar (bounded memory)."""
    with file_bar(item.bars, item.name, item.seconds) as update:
        yield from iter_encode(codec, reader, update)
    _warn_clipping(reader)


def _warn_clipping(reader: AudioReader) -> None:
    if reader.clipping:
        warnings.warn(
            f"{reader.name}: {reader.clipping}", ClippingWarning, stacklevel=2
        )


def encode_chunk(chunk: list[Item], codec: Any) -> tuple[Outcome, list]:
    """Load, resample and tokenize a chunk of audio items.

    Short items share forward passes; an item longer than
    :data:`~focalcodec.io.longaudio.WHOLE_SECONDS` is read and encoded piece by piece.
    Returns per-item outcomes and, for the items that worked, ``(index, toks,
    num_samples, source_rate)``.
    """
    outcome: Outcome = [None] * len(chunk)
    sigs, meta, done = [], [], []
    for i, item in enumerate(chunk):
        try:
            with open_reader(item, codec) as reader:
                if fits_whole(codec, reader.num_samples):
                    sig = reader.read_all()
                    _warn_clipping(reader)
                    sigs.append(
                        prepare_signal(sig, reader.sample_rate, codec, item.name)
                    )
                    meta.append((i, reader.source_rate))
                    continue
                toks = np.concatenate(list(encode_long(item, reader, codec)))
                done.append((i, toks, reader.num_samples, reader.source_rate))
        except Exception as exc:
            outcome[i] = exc
    try:
        all_toks = encode_batch(sigs, codec) if sigs else []
    except Exception as exc:
        for i, _ in meta:
            outcome[i] = exc
        return outcome, done
    done += [
        (i, t, len(s), r) for (i, r), t, s in zip(meta, all_toks, sigs, strict=True)
    ]
    return outcome, sorted(done, key=lambda entry: entry[0])


def out_suffix(args: argparse.Namespace) -> str:
    """Suffix for outputs in a directory; a single -o FILE keeps its own suffix."""
    return "." + (args.format or "wav")


def decode_to_output(
    item: Item,
    codec: Any,
    toks: np.ndarray,
    num_samples: int,
    args: argparse.Namespace,
    **knn: Any,
) -> None:
    """Decode tokens (L,) of ``num_samples`` input samples and write the item's audio.

    Long token streams are decoded and written piece by piece (bounded memory).
    ``knn`` may hold ``matching_set`` and ``topk`` (voice conversion).
    """
    rate = int(codec.sample_rate_output)
    length = num_samples * rate // int(codec.sample_rate_input)
    item.seconds = num_samples / codec.sample_rate_input
    with file_bar(item.bars, item.name, item.seconds) as update:
        pieces = iter_decode(codec, toks, length, progress=update, **knn)
        save_audio(item, pieces, rate, args)


def save_audio(
    item: Item,
    sig: np.ndarray | Iterable[np.ndarray],
    rate: int,
    args: argparse.Namespace,
) -> None:
    """Write audio at ``rate``, a waveform (N,) or its pieces, to the item's output,
    resampled and encoded as ``--sample-rate`` and ``--format`` ask."""
    target = _output_rate(rate, args.sample_rate, item.record or {})
    if args.format or item.dst is None:
        fmt = (args.format or "wav").upper()
    else:
        fmt = audio_format(item.dst)
    pieces = [sig] if isinstance(sig, np.ndarray) else sig
    with open_output(item, force=args.force) as fileobj:
        write_pieces(fileobj, pieces, rate, target, fmt)


def _output_rate(rate: int, wanted: str | None, record: dict) -> int:
    if wanted is None:
        return rate
    if wanted == "source":
        return int(record.get("source_rate") or rate)
    return _sample_rate(wanted)


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

    ``--sample-rate`` must be a plausible rate or ``source``; a single -o FILE needs an
    audio suffix, or --format, and they must agree.
    """
    if args.sample_rate not in (None, "source"):
        _sample_rate(args.sample_rate)
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
