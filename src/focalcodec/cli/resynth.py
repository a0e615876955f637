"""``focalcodec resynth``: audio -> tokens -> audio, in one step."""

from __future__ import annotations

import argparse

from ..io.audio import AUDIO_SUFFIXES
from ..pretrained import DEFAULT_MODEL
from .batch import (
    Item,
    Outcome,
    check_audio_output,
    decode_to_output,
    encode_chunk,
    out_suffix,
    plan,
    run_batch,
)
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

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                chunk[i].record = {"source_rate": rate}
                decode_to_output(chunk[i], codec, toks, num_samples, args)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(
        items,
        work,
        quiet=args.quiet,
        batch_size=args.batch_size,
        verb="resynthesized",
    )
