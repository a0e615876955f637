"""``focalcodec tokenize``: a corpus -> a resumable token folder.

The corpus is an audio folder or JSONL manifest, or a container that is read where it
lives (Parquet, a ``save_to_disk`` folder, a Hub id, WebDataset tars, a Lhotse
manifest or Shar folder; detected, or named with ``--source-kind``). Runs under
``torchrun`` as is: each process takes its share of the items, or of the shards (see
:mod:`focalcodec.pipeline.tokenize`, :mod:`focalcodec.pipeline.sources`), and rank 0
writes the index when all are done.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import UsageError
from ..files.manifest import scan
from ..pretrained import DEFAULT_MODEL
from .options import (
    add_backend,
    add_common,
    add_model,
    non_negative_int,
    open_models,
    positive_float,
    positive_int,
)
from .report import error, message, write_line

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="audio folder or manifest .jsonl; Parquet file(s) or folder, "
        "save_to_disk folder, Hub id (owner/name); tar shards (file, glob, "
        "{000..009}); Lhotse cuts.jsonl.gz or Shar folder",
    )
    parser.add_argument("-o", "--output", required=True, help="output token folder")
    parser.add_argument(
        "--format",
        choices=("npy", "parquet", "shar"),
        default="npy",
        help="npy: one memory-mappable token array + offsets; parquet: LM-ready "
        "tables and a dataset card (needs focalcodec[tokens]); shar: also a Lhotse "
        "Shar field for a Shar SOURCE (default: npy)",
    )
    _add_source_options(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--exact",
        dest="exact",
        action="store_const",
        const=True,
        default=None,
        help="encode item by item, each item whole: its solo tokens, bit for bit "
        "(the default on a CPU, where it is also the fastest)",
    )
    mode.add_argument(
        "--batched",
        dest="exact",
        action="store_const",
        const=False,
        help="length-sorted padded batches, also on a CPU (the default on a GPU); "
        "tokens equal solo tokens except at float-rounding ties",
    )
    parser.add_argument(
        "--batch-seconds",
        type=positive_float,
        default=60.0,
        help="padded audio per batch, items x longest item (default: 60; try 600 "
        "with --precision bf16 on a GPU)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="at most this many items per batch",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16 runs the model under autocast, on a GPU or a CPU with native bf16 "
        "(AVX512-BF16, AMX): about 2x faster there, some tokens change (default: fp32)",
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="processes that decode audio (default: from the CPU count; 0: none)",
    )
    parser.add_argument(
        "--long-seconds",
        type=positive_float,
        default=120.0,
        help="longer items are encoded alone in long-form windows, with bounded "
        "memory (default: 120)",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=256,
        help="items per data file (default: 256)",
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_common(parser, batch=False)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    from ..pipeline.sources import KINDS

    group = parser.add_argument_group("corpora in containers")
    group.add_argument(
        "--source-kind",
        choices=("auto", *KINDS),
        default="auto",
        help="what SOURCE is (default: auto, detected)",
    )
    group.add_argument(
        "--audio-column",
        help="the audio column (Parquet, Arrow, Hub), member extension (tar) or "
        "Shar field (default: found)",
    )
    group.add_argument(
        "--id-column",
        help="column (or tar .json field) of the item ids (default: id, else the key "
        "or shard:row)",
    )
    group.add_argument("--split", help="the split of a Hugging Face dataset")
    group.add_argument(
        "--shar-field",
        default="codes",
        help="with --format shar: the field's file stem (default: codes)",
    )


def _command(args: argparse.Namespace) -> str:
    """The command line, for the dataset card (reconstructed if not run from one)."""
    argv = sys.argv[1:]
    if "tokenize" in argv:
        return shlex.join(["focalcodec", *argv[argv.index("tokenize") :]])
    parts = ["focalcodec", "tokenize", args.source, "-o", args.output]
    parts += ["-m", str(args.model), "--format", args.format]
    return shlex.join(parts)


def _options(args: argparse.Namespace):
    from ..pipeline.tokenize import TokenizeOptions

    return TokenizeOptions(
        fmt=args.format,
        exact=args.exact,
        batch_seconds=args.batch_seconds,
        max_items=args.batch_size,
        workers=args.workers,
        precision=args.precision,
        shard_size=args.shard_size,
        long_seconds=args.long_seconds,
        force=args.force,
        quiet=args.quiet,
        shar_field=args.shar_field,
        command=_command(args),
    )


def _corpus(args: argparse.Namespace):
    """The entries of a folder or manifest, or an opened container source."""
    from ..pipeline.sources import detect_kind, open_source

    kind = detect_kind(args.source) if args.source_kind == "auto" else args.source_kind
    columns = {
        "audio_column": args.audio_column,
        "id_column": args.id_column,
        "split": args.split,
    }
    if args.format == "shar" and kind != "shar":
        raise UsageError(
            f"--format shar writes a field for a Lhotse Shar folder; {args.source} "
            f"is a {kind} source"
        )
    if kind != "files":
        return open_source(args.source, kind, **columns)
    given = [k for k, v in columns.items() if v is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(f"{flag} is for corpora in containers, not an audio folder")
    return scan(args.source, exclude=[args.output], problems=args.problems)


def _say(name: str, exc: BaseException) -> None:
    text = message(exc)
    # Errors that name their item already say where they happened.
    error(text if text.startswith(name) else f"{name}: {text}")


def run(args: argparse.Namespace) -> int:
    from ..pipeline.sources import tokenize_source
    from ..pipeline.tokenize import tokenize_entries
    from ..runtime import cleanup, setup

    options = _options(args)
    # What a folder or manifest scan could not use (bad lines, links out of the tree,
    # unreadable folders): one line each, the rest goes on, and the run fails.
    args.problems = []
    onnx = args.backend == "onnx"
    if onnx and options.precision != "fp32":
        raise UsageError("--precision bf16 is for the PyTorch backend, not onnx")
    corpus = _corpus(args)
    for name, reason in args.problems:
        error(f"{name}: {reason}")
    tokenize = tokenize_entries if isinstance(corpus, list) else tokenize_source
    models = open_models(args) if onnx else None
    dist = setup("cpu" if onnx else args.device)
    try:
        models = models or open_models(args, device=str(dist.device))
        codec = models.get(args.model)
        report = tokenize(corpus, args.output, codec, options, dist, on_error=_say)
    finally:
        cleanup()
    if not args.quiet:
        for damaged in report.damaged:
            write_line(f"focalcodec: warning: redone, damaged: {damaged}")
    if dist.is_main and not args.quiet:
        if report.already_done:
            write_line(f"resuming: {report.already_done} items already done")
        write_line(
            f"tokenized {report.written} items ({report.seconds:.1f} s of audio) on "
            f"{dist.world_size} process(es); {report.items} items in {args.output}"
        )
        for line in report.outputs:
            write_line(line)
    if dist.is_main and report.missing and not report.any_failed:
        # Only a data file damaged after this run checked it leaves items out.
        error(f"{report.missing} items are missing; run the command again")
        return 1
    return 1 if report.any_failed or args.problems else 0
