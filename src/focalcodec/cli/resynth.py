"""``focalcodec resynth``: audio -> tokens -> audio, in one step."""

from __future__ import annotations

import argparse

from ..io import bitstream
from ..io.audio import AUDIO_SUFFIXES
from ..io.compress import decode_tokens, header_for
from ..pretrained import DEFAULT_MODEL
from .batch import (
    Item,
    Outcome,
    check_audio_output,
    encode_chunk,
    out_suffix,
    plan,
    run_batch,
    save_audio,
)
from .options import (
    add_audio_output,
    add_backend,
    add_common,
    add_inputs_outputs,
    add_model,
    open_models,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs_outputs(parser, "audio files", "an audio file")
    add_model(parser, DEFAULT_MODEL)
    add_backend(parser)
    add_audio_output(parser)
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    check_audio_output(args)
    items = plan(
        args.inputs, args.output, AUDIO_SUFFIXES, out_suffix(args), force=args.force
    )
    models = open_models(args)

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                container = bitstream.Container(
                    header_for(codec, rate), toks, num_samples
                )
                sig, out_rate = decode_tokens(container, codec)
                chunk[i].record = {"source_rate": rate}
                save_audio(chunk[i], sig.numpy(), out_rate, args)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(items, work, quiet=args.quiet, batch_size=args.batch_size)
