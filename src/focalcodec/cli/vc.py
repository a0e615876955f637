"""``focalcodec vc``: kNN voice conversion towards reference recordings or a bank."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import FormatError, UsageError
from ..io import bitstream
from ..io.audio import AUDIO_SUFFIXES
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import check_model, decode_tokens, header_for
from ..io.manifest import find_files
from ..pretrained import DEFAULT_MODEL
from .batch import (
    Item,
    check_audio_output,
    encode_chunk,
    out_suffix,
    per_item,
    plan,
    run_batch,
    save_audio,
)
from .options import (
    add_audio_output,
    add_backend,
    add_common,
    add_model,
    open_models,
    refuse_onnx,
)
from .report import write_line

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--save-bank",
        metavar="FILE",
        help="save the speaker bank built from --reference to FILE (.safetensors)",
    )
    parser.add_argument(
        "--topk", type=int, default=4, help="neighbours averaged per frame (default: 4)"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_audio_output(parser)
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from ..io.banks import load_bank, matching_set_from_files, save_bank

    refuse_onnx(args, "vc", "the ONNX export has no kNN matching")
    if bool(args.bank) == bool(args.reference):
        raise UsageError("give either --reference FILES_OR_DIRS or --bank FILE")
    if not args.inputs and not args.save_bank:
        raise UsageError("nothing to do: give SOURCE files, or --save-bank FILE")
    if args.inputs:
        check_audio_output(args)
        suffixes = (*AUDIO_SUFFIXES, FCZ_SUFFIX)
        items = plan(
            args.inputs, args.output, suffixes, out_suffix(args), force=args.force
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
                write_line(f"saved speaker bank {args.save_bank} ({len(bank)} frames)")
    if not args.inputs:
        return 0
    bank = bank.to(codec.device)

    def work(item: Item) -> None:
        container = _tokens_of(item, codec)
        sig, rate = decode_tokens(container, codec, matching_set=bank, topk=args.topk)
        item.record = {"source_rate": container.header.source_sample_rate}
        save_audio(item, sig.numpy(), rate, args)

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
    outcome, done = encode_chunk([item], codec)
    if outcome[0] is not None:
        raise outcome[0]
    _, toks, num_samples, rate = done[0]
    return bitstream.Container(header_for(codec, rate), toks, num_samples)
