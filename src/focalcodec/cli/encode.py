"""``focalcodec encode``: audio files -> ``.fcz`` token files."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..io.audio import AUDIO_SUFFIXES
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import header_for, tokens_to_bytes
from ..pretrained import DEFAULT_MODEL
from .batch import Item, Outcome, encode_chunk, plan, run_batch, write_output
from .options import add_backend, add_common, add_inputs_outputs, add_model, open_models

__all__ = ["add_arguments", "open_entropy", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_inputs_outputs(
        parser, "audio files (wav, flac, ogg, mp3, any rate)", "a .fcz file"
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


def open_entropy(spec: str):
    """The entropy model of an ``--entropy`` value (None for ``none``)."""
    if spec in ("none", "adaptive"):
        from ..io.entropy import resolve_entropy

        return resolve_entropy(spec)
    if spec.startswith("lm:") and len(spec) > 3:
        from ..lm.coding import LMEntropyModel

        return LMEntropyModel(spec[3:])
    raise UsageError(f"--entropy {spec!r}: use none, adaptive or lm:DIR")


def run(args: argparse.Namespace) -> int:
    items = plan(args.inputs, args.output, AUDIO_SUFFIXES, FCZ_SUFFIX, force=args.force)
    entropy = open_entropy(args.entropy)
    models = open_models(args)

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome, done = encode_chunk(chunk, codec)
        for i, toks, num_samples, rate in done:
            try:
                header = header_for(codec, rate)
                data = tokens_to_bytes(toks, num_samples, header, entropy)
                write_output(chunk[i], data, force=args.force)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(items, work, quiet=args.quiet, batch_size=args.batch_size)
