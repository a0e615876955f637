"""``focalcodec info``: what a ``.fcz`` file holds (model, duration, bitrate)."""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path
from typing import Any

from ..io import bitstream
from ..io.entropy import describe
from .batch import Item, per_item, read_input, run_batch
from .report import print_json

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="FILE", help=".fcz files")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def run(args: argparse.Namespace) -> int:
    items = [Item(None if t == "-" else Path(t), None) for t in args.inputs]

    def work(item: Item) -> None:
        source = read_input(item)
        with (
            source if isinstance(source, io.BytesIO) else open(source, "rb") as fileobj
        ):
            reader = bitstream.Reader(fileobj)
            packets = reader.skim().packets
            size = fileobj.tell()
        summary = _summary(reader, packets, size)
        print_json(summary) if args.json else _print_summary(item.name, summary)

    return run_batch(items, per_item(work), quiet=True)


def _summary(reader: bitstream.Reader, packets: int, size: int) -> dict[str, Any]:
    h = reader.header
    seconds = reader.num_samples / h.sample_rate_input
    payload = math.ceil(reader.num_tokens * h.bits_per_token / 8)
    return {
        "model_name": h.model_name,
        "config_hash": h.model_hash.hex(),
        "version": h.version,
        "bits_per_token": h.bits_per_token,
        "codebook_size": 2**h.bits_per_token,
        "token_rate": h.token_rate,
        "num_tokens": reader.num_tokens,
        "num_samples": reader.num_samples,
        "duration": seconds,
        "sample_rate_input": h.sample_rate_input,
        "sample_rate_output": h.sample_rate_output,
        "source_sample_rate": h.source_sample_rate,
        "nominal_bitrate": h.bitrate,
        "file_bitrate": 8 * size / seconds if seconds else None,
        "size": size,
        "overhead": size - reader.stats.payload_bytes,
        "packets": packets,
        "entropy": describe(h.entropy, h.entropy_hash),
        "coded_packets": reader.stats.coded_packets,
        "packed_bytes": payload,
        "payload_bytes": reader.stats.payload_bytes,
        "payload_bits_per_token": (
            8 * reader.stats.payload_bytes / reader.num_tokens
            if reader.num_tokens
            else None
        ),
    }


def _print_summary(name: str, s: dict[str, Any]) -> None:
    rate = f"{s['file_bitrate']:.0f} bps" if s["file_bitrate"] else "n/a"
    source = s["source_sample_rate"] or "unknown"
    print(
        f"{name}\n"
        f"  model     {s['model_name'] or '(unnamed local model)'} "
        f"(config {s['config_hash']})\n"
        f"  tokens    {s['num_tokens']} x {s['bits_per_token']} bits "
        f"(codebook {s['codebook_size']}) at {s['token_rate']:g} Hz "
        f"= {s['nominal_bitrate']:g} bps\n"
        f"  duration  {s['duration']:.3f} s ({s['num_samples']} samples at "
        f"{s['sample_rate_input']} Hz; source {source} Hz; decodes at "
        f"{s['sample_rate_output']} Hz)\n"
        f"  size      {s['size']} bytes = {rate} "
        f"(overhead {s['overhead']} bytes, {s['packets']} "
        f"packet{'s' * (s['packets'] != 1)}, format version {s['version']})"
    )
    if s["entropy"] != "none":
        bpt = s["payload_bits_per_token"]
        print(
            f"  entropy   {s['entropy']}: "
            + (f"{bpt:.2f} bits/token" if bpt is not None else "no tokens")
            + f" (packed {s['bits_per_token']}); {s['payload_bytes']} payload bytes "
            f"vs {s['packed_bytes']} packed, {s['coded_packets']} of {s['packets']} "
            "packets coded"
        )
