"""``focalcodec tokenize``: a folder or manifest of audio -> a resumable token folder.

Runs under ``torchrun`` as is: each process takes its share of the items (see
:mod:`focalcodec.io.tokenizer`), and rank 0 writes the index when all are done.
"""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..io.manifest import scan
from ..pretrained import DEFAULT_MODEL
from .options import ModelCache, add_backend, add_common, add_model, open_models
from .report import error, message, write_line

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="DIR_OR_MANIFEST", help="audio directory or manifest .jsonl"
    )
    parser.add_argument("-o", "--output", required=True, help="output token folder")
    parser.add_argument(
        "--format",
        choices=("npy", "parquet"),
        default="npy",
        help="npy: one memory-mappable token array + offsets; parquet: LM-ready "
        "tables (needs focalcodec[tokens]) (default: npy)",
    )
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
        type=float,
        default=60.0,
        help="padded audio per batch, items x longest item (default: 60; try 600 "
        "with --precision bf16 on a GPU)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="at most this many items per batch"
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
        type=int,
        default=None,
        help="processes that decode audio (default: from the CPU count; 0: none)",
    )
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=120.0,
        help="longer items are encoded alone in long-form windows, with bounded "
        "memory (default: 120)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=256, help="items per data file (default: 256)"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_common(parser, batch=False)


def _options(args: argparse.Namespace):
    from ..io.tokenizer import TokenizeOptions

    for name in ("batch_size", "shard_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise UsageError("--workers must be 0 or more")
    if not args.batch_seconds > 0 or not args.long_seconds > 0:
        raise UsageError("--batch-seconds and --long-seconds must be positive")
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
    )


def run(args: argparse.Namespace) -> int:
    from ..io.tokenizer import tokenize_entries
    from ..runtime import cleanup, setup

    options = _options(args)
    onnx = args.backend == "onnx"
    if onnx and options.precision != "fp32":
        raise UsageError("--precision bf16 is for the PyTorch backend, not onnx")
    entries = scan(args.source, exclude=[args.output])
    models = open_models(args) if onnx else None
    dist = setup("cpu" if onnx else args.device)
    try:
        codec = (models or ModelCache(str(dist.device))).get(args.model)
        report = tokenize_entries(
            entries,
            args.output,
            codec,
            options,
            dist,
            on_error=lambda name, exc: error(f"{name}: {message(exc)}"),
        )
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
    if dist.is_main and report.missing and not report.any_failed:
        # Only a data file damaged after this run checked it leaves items out.
        error(f"{report.missing} items are missing; run the command again")
        return 1
    return 1 if report.any_failed else 0
