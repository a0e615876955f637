"""``focalcodec resynth``: audio -> tokens -> audio, in one step."""

from __future__ import annotations

import argparse

from ..files.audio import AUDIO_SUFFIXES
from ..pipeline.files import Job, resynth_files
from ..pretrained import DEFAULT_MODEL
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
    add_inputs_outputs(parser, "audio files", "an audio file")
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_audio_output(parser)
    add_common(parser)
    add_skip_existing(parser)


def run(args: argparse.Namespace) -> int:
    check_audio_output(args)
    items = plan(
        args.inputs,
        args.output,
        AUDIO_SUFFIXES,
        out_suffix(args),
        force=args.force,
        skip_existing=args.skip_existing,
    )
    models = open_models(args)

    def process(jobs: list[Job]) -> list:
        return resynth_files(
            jobs,
            models.get(args.model),
            force=args.force,
            sample_rate=output_rate(args),
            format=args.format,
        )

    return run_files(
        items,
        process,
        quiet=args.quiet,
        batch_size=args.batch_size,
        verb="resynthesized",
    )
