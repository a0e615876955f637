"""``focalcodec encode``: audio files -> ``.fcz`` token files."""

from __future__ import annotations

import argparse

from ..io import bitstream
from ..io.audio import AUDIO_SUFFIXES
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import header_for
from ..pretrained import DEFAULT_MODEL
from .batch import Item, Outcome, encode_chunk, plan, run_batch, write_output
from .options import add_backend, add_common, add_inputs_outputs, add_model, open_models

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs_outputs(
        parser, "audio files (wav, flac, ogg, mp3, any rate)", "a .fcz file"
    )
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    items = plan(args.inputs, args.output, AUDIO_SUFFIXES, FCZ_SUFFIX, force=args.force)
    models = open_models(args)

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                data = bitstream.dumps(header_for(codec, rate), toks, num_samples)
                write_output(chunk[i], data, force=args.force)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(items, work, quiet=args.quiet, batch_size=args.batch_size)
