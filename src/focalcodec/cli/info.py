"""``focalcodec info``: what a ``.fcz`` file holds (model, duration, bitrate), or with
``--system`` what this machine runs the model on (torch, threads, kernel backend)."""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fcz import bitstream
from ..fcz.entropy import describe
from .batch import Item, per_item, read_input, run_batch
from .report import print_json

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="FILE", help=".fcz files")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument(
        "--system",
        action="store_true",
        help="describe this machine instead: torch, threads, CPU flags and the "
        "kernel backend of the matrix products (calibrates it on first use)",
    )


def run(args: argparse.Namespace) -> int:
    if args.system:
        if args.inputs:
            raise UsageError("info: give .fcz files or --system, not both")
        return _system(args.json)
    if not args.inputs:
        raise UsageError("info: give one or more .fcz files (or --system)")
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


def _system(as_json: bool) -> int:
    """Print what runs the model here (:func:`focalcodec.modules.kernels.describe`)."""
    import torch

    from ..modules import kernels

    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["kernels"] = kernels.describe()
    if as_json:
        print_json(info)
        return 0
    for line in kernel_lines(info["kernels"]):
        print(line)
    print(f"  GPU       {info['cuda'] or 'none'}")
    return 0


def kernel_lines(k: dict[str, Any]) -> list[str]:
    """Text lines for ``kernels.describe()``: CPU, backend and why, measured rates."""
    cpu = k["cpu"]
    flags = [
        f for f in ("avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx") if cpu[f]
    ]
    lines = [
        f"  CPU       {cpu['model']} ({', '.join(flags) or 'no AVX2'}); torch "
        f"{k['torch']}, {k['threads']} threads",
        f"  kernels   {k['backend']}: {k['reason']} (available: "
        f"{', '.join(k['available'])})",
    ]
    lines += [
        f"            {n} unavailable: {why}" for n, why in k["unavailable"].items()
    ]
    record = k["calibration"] or {}
    for i, (name, rate) in enumerate(record.get("rates", {}).items()):
        lines.append(
            f"  {'' if i else 'rates':<10}{name}: "
            f"{rate.get('many_rows_gflops', 0):g} GFLOP/s on 512 rows, "
            f"{rate.get('few_rows_gbps', 0):g} GB/s of weights on 4 rows"
        )
    return lines
