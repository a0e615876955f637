"""``focalcodec encode``: audio files -> ``.fcz`` token files."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import UsageError
from ..io.audio import AUDIO_SUFFIXES
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import header_for, tokens_to_bytes
from ..io.longaudio import fits_whole, write_fcz
from ..pretrained import DEFAULT_MODEL
from .batch import (
    Item,
    Outcome,
    encode_chunk,
    encode_long,
    open_output,
    open_reader,
    plan,
    run_batch,
    write_output,
)
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
        from ..io.entropy import resolve_entropy

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

    def work(chunk: list[Item]) -> Outcome:
        codec = models.get(args.model)
        outcome: Outcome = [None] * len(chunk)
        short = []
        for i, item in enumerate(chunk):
            try:
                if not _encode_if_long(item, codec, args.force, entropy):
                    short.append(i)
            except Exception as exc:
                outcome[i] = exc
        results, done = encode_chunk([chunk[i] for i in short], codec)
        for i, exc in zip(short, results, strict=True):
            outcome[i] = exc
        for j, toks, num_samples, rate in done:
            i = short[j]
            try:
                header = header_for(codec, rate)
                data = tokens_to_bytes(toks, num_samples, header, entropy)
                write_output(chunk[i], data, force=args.force)
            except Exception as exc:
                outcome[i] = exc
        return outcome

    return run_batch(
        items, work, quiet=args.quiet, batch_size=args.batch_size, verb="encoded"
    )


def _encode_if_long(item: Item, codec, force: bool, entropy) -> bool:
    """Encode a long item with bounded memory; False if it is short (left to the
    batched path). Plain files are written packet by packet, as the stream gives
    tokens; entropy-coded ones at the end (the tokens are small: 8 bytes each), so that
    a coded file is kept only when it is smaller than the plain one."""
    with open_reader(item, codec) as reader:
        if fits_whole(codec, reader.num_samples):
            return False
        header = header_for(codec, reader.source_rate)
        pieces = encode_long(item, reader, codec)
        if entropy is not None:
            toks = np.concatenate(list(pieces))
            data = tokens_to_bytes(toks, reader.num_samples, header, entropy)
            write_output(item, data, force=force)
            return True
        with open_output(item, force=force) as fileobj:
            write_fcz(fileobj, header, pieces, reader.num_samples)
    return True
