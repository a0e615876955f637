"""``focalcodec decode``: ``.fcz`` token files -> audio."""

from __future__ import annotations

import argparse
import io

from ..errors import FormatError
from ..io import bitstream
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import check_model, coder_for, decode_tokens
from .batch import (
    Item,
    check_audio_output,
    out_suffix,
    per_item,
    plan,
    read_input,
    run_batch,
    save_audio,
)
from .options import (
    Models,
    add_audio_output,
    add_backend,
    add_common,
    add_inputs_outputs,
    add_model,
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


def run(args: argparse.Namespace) -> int:
    check_audio_output(args)
    items = plan(
        args.inputs, args.output, (FCZ_SUFFIX,), out_suffix(args), force=args.force
    )
    models = open_models(args)
    entropy = None
    if args.lm:
        from ..lm.coding import LMEntropyModel

        entropy = LMEntropyModel(args.lm)

    def work(item: Item) -> None:
        source = read_input(item)
        with (
            source if isinstance(source, io.BytesIO) else open(source, "rb") as fileobj
        ):
            reader = bitstream.Reader(fileobj)
            codec = codec_for(reader.header, args.model, models, item.name)
            reader.attach(coder_for(reader.header, entropy))
            container = reader.read_all()
        sig, rate = decode_tokens(container, codec)
        item.record = {"source_rate": container.header.source_sample_rate}
        save_audio(item, sig.numpy(), rate, args)

    return run_batch(items, per_item(work), quiet=args.quiet)


def codec_for(header: bitstream.Header, spec: str | None, models: Models, name: str):
    """The --model codec, or the one the header names; checked against the header."""
    if spec is None:
        if not header.model_name:
            raise FormatError(
                f"{name}: made by an unnamed local model (config "
                f"{header.model_hash.hex()}); pass it with --model DIR"
            )
        spec = header.model_name
    codec = models.get(spec)
    check_model(header, codec, where=name)
    return codec
