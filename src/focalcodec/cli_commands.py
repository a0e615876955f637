"""The built-in subcommands of ``focalcodec`` (parsers in ``add_*``, actions in ``run_*``).

The framework (dispatch, batching, error reporting, output planning) is in
:mod:`focalcodec.cli`; each ``run_*`` here returns an exit status.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import bitstream
from .audio import AUDIO_SUFFIXES, audio_format, load_audio, resample, write_audio
from .cli import (
    DEFAULT_MODEL,
    FCZ_SUFFIX,
    Item,
    Outcome,
    UsageError,
    _model_option,
    _write_line,
    find_files,
    per_item,
    plan,
    print_json,
    read_input,
    run_batch,
    write_output,
)
from .cli_backend import (
    Models,
    add_backend_option,
    add_details_option,
    open_models,
    refuse_onnx,
    run_details,
)
from .compress import (
    check_model,
    decode_tokens,
    encode_batch,
    header_for,
    prepare_signal,
)
from .errors import AudioError, FormatError

__all__ = [
    "add_decode",
    "add_encode",
    "add_info",
    "add_models",
    "add_resynth",
    "add_tokenize",
    "add_vc",
    "model_properties",
    "run_decode",
    "run_encode",
    "run_info",
    "run_models",
    "run_resynth",
    "run_tokenize",
    "run_vc",
]

OUTPUT_FORMATS = ("wav", "flac", "ogg", "mp3")


# ---------------------------------------------------------------------------------------
# Shared options and steps
# ---------------------------------------------------------------------------------------


def _io_arguments(parser: argparse.ArgumentParser, what: str, output: str) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", help=f"{what}, directories, or - for stdin"
    )
    parser.add_argument(
        "-o", "--output", required=True, help=f"{output}, a directory, or - for stdout"
    )


def _audio_out_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        help="output audio format (default: from the -o suffix, else wav)",
    )
    parser.add_argument(
        "--sample-rate",
        default=None,
        help="resample the output: a rate in Hz, or 'source' for the original input "
        "rate (default: the model's output rate)",
    )


def _out_suffix(args: argparse.Namespace) -> str:
    """Suffix for outputs in a directory; a single -o FILE keeps its own suffix."""
    return "." + (args.format or "wav")


def _encode_chunk(chunk: list[Item], codec: Any) -> tuple[Outcome, list]:
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


def _save_audio(item: Item, sig: np.ndarray, rate: int, args: argparse.Namespace):
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


def _check_audio_output(args: argparse.Namespace) -> None:
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


# ---------------------------------------------------------------------------------------
# encode / decode / resynth
# ---------------------------------------------------------------------------------------


def add_encode(parser: argparse.ArgumentParser) -> None:
    _io_arguments(parser, "audio files (wav, flac, ogg, mp3, any rate)", "a .fcz file")
    _model_option(parser, DEFAULT_MODEL)
    add_backend_option(parser)


def run_encode(args: argparse.Namespace) -> int:
    items = plan(args.inputs, args.output, AUDIO_SUFFIXES, FCZ_SUFFIX, force=args.force)
    models = open_models(args)

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = _encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                data = bitstream.dumps(header_for(codec, rate), toks, num_samples)
                write_output(chunk[i], data, force=args.force)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(items, work, quiet=args.quiet, batch_size=args.batch_size)


def add_decode(parser: argparse.ArgumentParser) -> None:
    _io_arguments(parser, ".fcz files", "an audio file")
    _model_option(parser, None)
    add_backend_option(parser)
    _audio_out_arguments(parser)


def run_decode(args: argparse.Namespace) -> int:
    _check_audio_output(args)
    items = plan(
        args.inputs, args.output, (FCZ_SUFFIX,), _out_suffix(args), force=args.force
    )
    models = open_models(args)

    def work(item: Item) -> None:
        source = read_input(item)
        with (
            source if isinstance(source, io.BytesIO) else open(source, "rb") as fileobj
        ):
            reader = bitstream.Reader(fileobj)
            codec = _codec_for(reader.header, args.model, models, item.name)
            container = reader.read_all()
        sig, rate = decode_tokens(container, codec)
        item.record = {"source_rate": container.header.source_sample_rate}
        _save_audio(item, sig.numpy(), rate, args)

    return run_batch(items, per_item(work), quiet=args.quiet)


def _codec_for(header: bitstream.Header, spec: str | None, models: Models, name: str):
    """The --model codec, or the one the header names; checked against the header."""
    if spec is None:
        if not header.model_name:
            raise FormatError(
                f"{name}: made by an unnamed local model (config "
                f"{header.model_hash.hex()}); pass it with --model DIR"
            )
        spec = header.model_name
    codec = models.get(spec)
    check_model(header, codec, where=name)
    return codec


def add_resynth(parser: argparse.ArgumentParser) -> None:
    _io_arguments(parser, "audio files", "an audio file")
    _model_option(parser, DEFAULT_MODEL)
    add_backend_option(parser)
    _audio_out_arguments(parser)


def run_resynth(args: argparse.Namespace) -> int:
    _check_audio_output(args)
    items = plan(
        args.inputs, args.output, AUDIO_SUFFIXES, _out_suffix(args), force=args.force
    )
    models = open_models(args)

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = _encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                container = bitstream.Container(
                    header_for(codec, rate), toks, num_samples
                )
                sig, out_rate = decode_tokens(container, codec)
                chunk[i].record = {"source_rate": rate}
                _save_audio(chunk[i], sig.numpy(), out_rate, args)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(items, work, quiet=args.quiet, batch_size=args.batch_size)


# ---------------------------------------------------------------------------------------
# vc
# ---------------------------------------------------------------------------------------


def add_vc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="SOURCE",
        help="audio or .fcz files, or directories",
    )
    parser.add_argument("-o", "--output", help="output audio file or directory")
    parser.add_argument(
        "-r",
        "--reference",
        nargs="+",
        default=[],
        metavar="REF",
        help="recordings of the target voice (files or directories)",
    )
    parser.add_argument(
        "--bank", help="use a saved speaker bank instead of --reference"
    )
    parser.add_argument("--save-bank", metavar="FILE", help="save the speaker bank built "
                        "from --reference to FILE (.safetensors)")  # fmt: skip
    parser.add_argument(
        "--topk", type=int, default=4, help="neighbours averaged per frame (default: 4)"
    )
    _model_option(parser, DEFAULT_MODEL)
    add_backend_option(parser)
    _audio_out_arguments(parser)


def run_vc(args: argparse.Namespace) -> int:
    from .vc import load_bank, matching_set_from_files, save_bank

    refuse_onnx(args, "vc", "the ONNX export has no kNN matching")
    if bool(args.bank) == bool(args.reference):
        raise UsageError("give either --reference FILES_OR_DIRS or --bank FILE")
    if not args.inputs and not args.save_bank:
        raise UsageError("nothing to do: give SOURCE files, or --save-bank FILE")
    if args.inputs:
        _check_audio_output(args)
        suffixes = (*AUDIO_SUFFIXES, FCZ_SUFFIX)
        items = plan(
            args.inputs, args.output, suffixes, _out_suffix(args), force=args.force
        )
    models = open_models(args)
    codec = models.get(args.model)
    if args.bank:
        bank = load_bank(args.bank, codec)
    else:
        refs = _expand_references(args.reference)
        bank = matching_set_from_files(codec, refs)
        if args.save_bank:
            save_bank(args.save_bank, bank, codec, sources=refs, force=args.force)
            if not args.quiet:
                _write_line(f"saved speaker bank {args.save_bank} ({len(bank)} frames)")
    if not args.inputs:
        return 0
    bank = bank.to(next(codec.parameters()).device)

    def work(item: Item) -> None:
        container = _tokens_of(item, codec)
        sig, rate = decode_tokens(container, codec, matching_set=bank, topk=args.topk)
        item.record = {"source_rate": container.header.source_sample_rate}
        _save_audio(item, sig.numpy(), rate, args)

    return run_batch(items, per_item(work), quiet=args.quiet)


def _expand_references(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        found = find_files(path, AUDIO_SUFFIXES) if path.is_dir() else [path]
        if not found:
            raise FormatError(f"{path}: no reference audio files found")
        files += found
    return files


def _tokens_of(item: Item, codec: Any) -> bitstream.Container:
    """Tokens of a source: read from a .fcz file, or computed from audio."""
    if item.src is not None and item.src.suffix.lower() == FCZ_SUFFIX:
        with open(item.src, "rb") as fileobj:
            reader = bitstream.Reader(fileobj)
            check_model(reader.header, codec, where=item.name)
            return reader.read_all()
    outcome, done = _encode_chunk([item], codec)
    if outcome[0] is not None:
        raise outcome[0]
    _, toks, num_samples, rate = done[0]
    return bitstream.Container(header_for(codec, rate), toks, num_samples)


# ---------------------------------------------------------------------------------------
# tokenize
# ---------------------------------------------------------------------------------------


def add_tokenize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="DIR_OR_MANIFEST", help="audio directory or manifest .jsonl"
    )
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument(
        "--shard-size", type=int, default=256, help="items per shard (default: 256)"
    )
    _model_option(parser, DEFAULT_MODEL)
    add_backend_option(parser)


def run_tokenize(args: argparse.Namespace) -> int:
    from .shards import ShardWriter

    items = _tokenize_items(Path(args.source))
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
        _write_line(f"resuming: {len(items) - len(todo)} items already done")

    def work(chunk: list[Item]) -> Outcome:
        outcome, done = _encode_chunk(chunk, codec)
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


def _tokenize_items(source: Path) -> list[Item]:
    if source.is_dir():
        files = find_files(source, AUDIO_SUFFIXES)
        if not files:
            raise FormatError(f"{source}: no audio files found")
        return [
            Item(p, None, record={"id": p.relative_to(source).as_posix()})
            for p in files
        ]
    if not source.is_file():
        raise FormatError(f"{source}: no such file or directory")
    items = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            rel = entry["path"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise FormatError(
                f"{source}:{number}: expected a JSON object with a 'path' key"
            ) from None
        path = Path(rel) if Path(rel).is_absolute() else source.parent / rel
        items.append(Item(path, None, record={"id": str(rel), **entry}))
    return items


# ---------------------------------------------------------------------------------------
# info / models
# ---------------------------------------------------------------------------------------


def add_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="FILE", help=".fcz files")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def run_info(args: argparse.Namespace) -> int:
    items = [Item(None if t == "-" else Path(t), None) for t in args.inputs]

    def work(item: Item) -> None:
        source = read_input(item)
        with (
            source if isinstance(source, io.BytesIO) else open(source, "rb") as fileobj
        ):
            reader = bitstream.Reader(fileobj)
            packets = sum(1 for _ in reader.packets())
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
        "version": bitstream.VERSION,
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
        "overhead": size - payload,
        "packets": packets,
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


def add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    add_details_option(parser)


def run_models(args: argparse.Namespace) -> int:
    from .config import packaged_config, packaged_names

    if args.details:
        return run_details(args)
    rows = [model_properties(name, packaged_config(name)) for name in packaged_names()]
    if args.json:
        for row in rows:
            print_json(row)
        return 0
    head = f"{'name':<28}{'tokens/s':>9}{'codebook':>10}{'bps':>8}{'latency':>10}"
    print(head + f"{'Hz in/out':>13}")
    for r in rows:
        latency = f"{r['latency_ms']:g} ms" if r["causal"] else "offline"
        rates = f"{r['sample_rate_input'] // 1000}k/{r['sample_rate_output'] // 1000}k"
        print(
            f"{r['name']:<28}{r['token_rate']:>9g}{r['codebook_size']:>10}"
            f"{r['bitrate']:>8g}{latency:>10}{rates:>13}"
        )
    return 0


def model_properties(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Rates of a model computed from its config, without building it.

    Defaults follow the component constructors: WavLM strides (5,2,2,2,2,2,2) and
    lookahead 3 at 16 kHz; Vocos hop 320, WaveNeXt hop 480.
    """
    enc = config.get("encoder_config") or {}
    comp = config.get("compressor_config") or {}
    dec = config.get("decoder_config") or {}
    strides = math.prod(enc.get("strides", (5, 2, 2, 2, 2, 2, 2)))
    down = math.prod(comp.get("downscale_factors", (1, 1, 1)))
    default_hop = 320 if config.get("decoder_name") == "Vocos" else 480
    codebook = int((config.get("quantizer_config") or {}).get("codebook_size", 4096))
    slots = ("encoder", "compressor", "decompressor", "decoder")
    causal = all((config.get(f"{s}_config") or {}).get("causal", False) for s in slots)
    token_rate = 16000 / (strides * down)
    return {
        "name": name,
        "token_rate": token_rate,
        "codebook_size": codebook,
        "bits_per_token": int(math.log2(codebook)),
        "bitrate": token_rate * math.log2(codebook),
        "causal": causal,
        "latency_ms": 1000 * strides * (1 + enc.get("lookahead_size", 3)) / 16000
        if causal
        else None,
        "sample_rate_input": 16000,
        "sample_rate_output": 16000 * dec.get("hop_length", default_hop) // strides,
    }
