"""``focalcodec decode``: ``.fcz`` token files -> audio."""

from __future__ import annotations

import argparse
import io

from ..io import bitstream
from ..io.bitstream import FCZ_SUFFIX
from ..io.compress import check_model, coder_for, loadable_name
from .batch import (
    Item,
    check_audio_output,
    decode_to_output,
    out_suffix,
    per_item,
    plan,
    read_input,
    run_batch,
)
from .options import (
    Models,
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

    def work(item: Item) -> None:
        container, codec = read_container(item, args.model, models, entropy)
        item.record = {"source_rate": container.header.source_sample_rate}
        decode_to_output(item, codec, container.toks, container.num_samples, args)

    return run_batch(items, per_item(work), quiet=args.quiet, verb="decoded")


def read_container(
    item: Item, spec: str | None, models: Models, entropy=None
) -> tuple[bitstream.Container, object]:
    """The item's container, every packet checked, and the codec to decode it.

    ``entropy`` is the token LM of LM-coded files (``--lm``); other coded files need
    nothing.
    """
    source = read_input(item)
    with source if isinstance(source, io.BytesIO) else open(source, "rb") as fileobj:
        reader = bitstream.Reader(fileobj)
        codec = codec_for(reader.header, spec, models, item.name)
        reader.attach(coder_for(reader.header, entropy))
        return reader.read_all(), codec


def codec_for(header: bitstream.Header, spec: str | None, models: Models, name: str):
    """The --model codec, or the one the header names; checked against the header.

    A header's name is loaded only if it is a packaged name or Hub id, never a local
    path (see :func:`focalcodec.io.compress.loadable_name`).
    """
    if spec is None:
        spec = loadable_name(header, where=name)
    codec = models.get(spec)
    check_model(header, codec, where=name)
    return codec
