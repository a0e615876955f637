"""``focalcodec encode``: audio files -> ``.fcz`` token files."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..fcz.bitstream import FCZ_SUFFIX
from ..files.audio import AUDIO_SUFFIXES
from ..pipeline.files import Job, encode_files
from ..pretrained import DEFAULT_MODEL
from .batch import plan, run_files
from .options import (
    add_backend,
    add_common,
    add_inputs_outputs,
    add_model,
    add_skip_existing,
    open_models,
)

__all__ = ["add_arguments", "open_entropy", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs_outputs(
        parser, "audio files (wav, flac, ogg, mp3, any rate, any length)", "a .fcz file"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    parser.add_argument(
        "--entropy",
        default="none",
        metavar="MODEL",
        help="lossless entropy coding of the tokens: none (default), adaptive (no "
        "weights needed), or lm:DIR (a token LM folder; decode needs --lm DIR)",
    )
    add_common(parser)
    add_skip_existing(parser)


def open_entropy(spec: str):
    """The entropy model of an ``--entropy`` value (None for ``none``)."""
    if spec in ("none", "adaptive"):
        from ..fcz.entropy import resolve_entropy

        return resolve_entropy(spec)
    if spec.startswith("lm:") and len(spec) > 3:
        from ..lm.coding import LMEntropyModel

        return LMEntropyModel(spec[3:])
    raise UsageError(f"--entropy {spec!r}: use none, adaptive or lm:DIR")


def run(args: argparse.Namespace) -> int:
    items = plan(
        args.inputs,
        args.output,
        AUDIO_SUFFIXES,
        FCZ_SUFFIX,
        force=args.force,
        skip_existing=args.skip_existing,
    )
    entropy = open_entropy(args.entropy)
    models = open_models(args)

    def process(jobs: list[Job]) -> list:
        codec = models.get(args.model)
        return encode_files(jobs, codec, entropy=entropy, force=args.force)

    return run_files(
        items, process, quiet=args.quiet, batch_size=args.batch_size, verb="encoded"
    )
