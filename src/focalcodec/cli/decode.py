"""``focalcodec decode``: ``.fcz`` token files -> audio."""

from __future__ import annotations

import argparse
from typing import Any

from ..fcz.bitstream import FCZ_SUFFIX
from ..identity import loadable_name
from ..pipeline.files import Job, decode_files
from ..pipeline.models import Models
from .batch import check_audio_output, out_suffix, output_rate, plan, run_files
from .options import (
    add_audio_output,
    add_backend,
    add_common,
    add_inputs_outputs,
    add_model,
    add_skip_existing,
    open_models,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs_outputs(parser, ".fcz files", "an audio file")
    add_model(parser, None)
    add_backend(parser)
    parser.add_argument(
        "--lm",
        metavar="DIR",
        help="the token LM of files encoded with --entropy lm:DIR (checked by hash)",
    )
    add_audio_output(parser)
    add_common(parser)
    add_skip_existing(parser)


def run(args: argparse.Namespace) -> int:
    check_audio_output(args)
    items = plan(
        args.inputs,
        args.output,
        (FCZ_SUFFIX,),
        out_suffix(args),
        force=args.force,
        skip_existing=args.skip_existing,
    )
    models = open_models(args)
    entropy = None
    if args.lm:
        from ..lm.coding import LMEntropyModel

        entropy = LMEntropyModel(args.lm)

    def process(jobs: list[Job]) -> list:
        return [_decode(job, args, models, entropy) for job in jobs]

    return run_files(items, process, quiet=args.quiet, verb="decoded")


def _decode(job: Job, args: argparse.Namespace, models: Models, entropy) -> Any:
    """Decode one job with --model, or with the model its header names (a packaged
    name or Hub id only: see :func:`focalcodec.identity.loadable_name`)."""

    def loader(header) -> Any:
        return models.get(args.model or loadable_name(header, where=job.label))

    return decode_files(
        [job],
        loader,
        entropy=entropy,
        force=args.force,
        sample_rate=output_rate(args),
        format=args.format,
    )[0]
