"""``focalcodec vc``: kNN voice conversion towards reference recordings or a bank."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import FormatError, UsageError
from ..fcz.bitstream import FCZ_SUFFIX
from ..files.atomic import check_output, resolve
from ..files.audio import AUDIO_SUFFIXES
from ..files.manifest import find_files
from ..pipeline.files import Job, resynth_files
from ..pretrained import DEFAULT_MODEL
from .batch import Item, check_audio_output, out_suffix, output_rate, plan, run_files
from .options import (
    add_audio_output,
    add_backend,
    add_common,
    add_model,
    add_skip_existing,
    open_models,
    positive_int,
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
        "--topk",
        type=positive_int,
        default=4,
        help="neighbours averaged per frame (default: 4)",
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_audio_output(parser)
    add_common(parser)
    add_skip_existing(parser)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.banks import load_bank, matching_set_from_files, save_bank

    refuse_onnx(args, "vc", "the ONNX export has no kNN matching")
    if bool(args.bank) == bool(args.reference):
        raise UsageError("give either --reference FILES_OR_DIRS or --bank FILE")
    if not args.inputs and not args.save_bank:
        raise UsageError("nothing to do: give SOURCE files, or --save-bank FILE")
    if args.save_bank and args.bank:
        raise UsageError("--save-bank saves a bank built from --reference, not --bank")
    refs = _expand_references(args.reference)
    # References and banks are inputs: no output may replace them, even with --force.
    protect = [*refs, *([Path(args.bank)] if args.bank else [])]
    items: list[Item] = []
    if args.inputs:
        check_audio_output(args)
        suffixes = (*AUDIO_SUFFIXES, FCZ_SUFFIX)
        items = plan(
            args.inputs,
            args.output,
            suffixes,
            out_suffix(args),
            force=args.force,
            skip_existing=args.skip_existing,
            protect=protect,
        )
    if args.save_bank:
        _check_bank_output(args.save_bank, args.force, protect, items)
    models = open_models(args)
    codec = models.get(args.model)
    if args.bank:
        bank = load_bank(args.bank, codec)
    else:
        bank = matching_set_from_files(codec, refs)
        if args.save_bank:
            sources = [*refs, *(i.src for i in items if i.src is not None)]
            save_bank(args.save_bank, bank, codec, sources=sources, force=args.force)
            if not args.quiet:
                write_line(f"saved speaker bank {args.save_bank} ({len(bank)} frames)")
    if not args.inputs:
        return 0
    if args.topk > len(bank):
        raise UsageError(
            f"--topk {args.topk} is more than the {len(bank)} frames of the speaker "
            "bank: lower it or give more reference audio"
        )
    bank = bank.to(codec.device)

    def process(jobs: list[Job]) -> list:
        return resynth_files(
            jobs,
            codec,
            force=args.force,
            sample_rate=output_rate(args),
            format=args.format,
            matching_set=bank,
            topk=args.topk,
        )

    return run_files(items, process, quiet=args.quiet, verb="converted")


def _check_bank_output(
    path: str, force: bool, protect: list[Path], items: list[Item]
) -> None:
    """--save-bank may not replace a reference, a source, or an audio output."""
    sources = [i.src for i in items if i.src is not None]
    check_output(path, force=force, inputs=[*protect, *sources])
    target = resolve(path)
    for item in items:
        if item.dst is not None and resolve(item.dst) == target:
            raise UsageError(f"--save-bank {path} is also the output of {item.name}")


def _expand_references(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        found = find_files(path, AUDIO_SUFFIXES) if path.is_dir() else [path]
        if not found:
            raise FormatError(f"{path}: no reference audio files found")
        files += found
    return files
