"""``focalcodec tokenize``: a folder or manifest of audio -> a resumable token folder."""

from __future__ import annotations

import argparse

from ..io.compress import header_for
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
        "--shard-size", type=int, default=256, help="items per shard (default: 256)"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from ..io.shards import ShardWriter

    items = [
        Item(e.path, None, record={"id": e.id, **e.meta})
        for e in scan(args.source, exclude=[args.output])
    ]
    models = open_models(args)
    codec = models.get(args.model)
    header = header_for(codec)
    meta = {
        "model_name": header.model_name,
        "config_hash": header.model_hash.hex(),
        "bits_per_token": header.bits_per_token,
        "codebook_size": 2**header.bits_per_token,
        "token_rate": header.token_rate,
        "sample_rate": header.sample_rate_input,
    }
    writer = ShardWriter(
        args.output, meta, shard_size=args.shard_size, force=args.force
    )
    todo = [item for item in items if item.record["id"] not in writer.done]
    if not args.quiet and len(todo) < len(items):
        write_line(f"resuming: {len(items) - len(todo)} items already done")

    def work(chunk: list[Item]) -> Outcome:
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, _ in done:
            record = dict(chunk[i].record or {})
            record["num_samples"] = num_samples
            record["duration"] = round(num_samples / header.sample_rate_input, 4)
            try:
                writer.add(record, toks)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    try:
        status = run_batch(todo, work, quiet=args.quiet, batch_size=args.batch_size)
    finally:
        writer.flush()
    return status
