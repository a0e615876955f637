"""``focalcodec tokenize``: a folder or manifest of audio -> a resumable token folder."""

from __future__ import annotations

import argparse

from ..io.manifest import scan
from ..pretrained import DEFAULT_MODEL
from .batch import Item, Outcome, encode_chunk, run_batch
from .options import add_backend, add_common, add_model, open_models
from .report import write_line

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="DIR_OR_MANIFEST", help="audio directory or manifest .jsonl"
    )
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument(
        "--format",
        choices=("npy", "parquet"),
        default="npy",
        help="npy: one memory-mappable token array + offsets; parquet: LM-ready "
        "tables (needs focalcodec[tokens]) (default: npy)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=256, help="items per data file (default: 256)"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from ..io.tokens import TokenWriter, finish, open_folder, token_meta

    items = [
        Item(e.path, None, record={"id": e.id, "path": str(e.path), **e.meta})
        for e in scan(args.source, exclude=[args.output])
    ]
    models = open_models(args)
    codec = models.get(args.model)
    rate = codec.sample_rate_input
    open_folder(args.output, token_meta(codec), fmt=args.format, force=args.force)
    writer = TokenWriter(args.output, shard_size=args.shard_size)
    todo = [item for item in items if item.record["id"] not in writer.done]
    if not args.quiet and len(todo) < len(items):
        write_line(f"resuming: {len(items) - len(todo)} items already done")

    def work(chunk: list[Item]) -> Outcome:
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, _ in done:
            record = dict(chunk[i].record or {})
            record["num_samples"] = num_samples
            record["duration"] = num_samples / rate
            try:
                writer.add(record, toks)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    try:
        status = run_batch(todo, work, quiet=args.quiet, batch_size=args.batch_size)
    finally:
        writer.flush()
    finish(args.output, [item.record["id"] for item in items])
    return status
