"""``focalcodec models``: the packaged models, or one model's card (``--details``).

Every figure comes from the model itself (built on PyTorch's meta device: no weights,
no download), so the table cannot disagree with what the models do. A card ends with
what would run the model on this machine: the kernel backend of its matrix products
(:func:`focalcodec.modules.kernels.describe`; ONNX exports run on ONNX Runtime).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..deploy.onnx_export import MANIFEST_NAME
from ..errors import FocalCodecError
from .report import print_json

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    parser.add_argument(
        "--details",
        metavar="NAME",
        help="print the model card of NAME (packaged name, Hub id, local model "
        "directory or ONNX export folder): parameters per component, rates, latency, "
        "licence, source; nothing is downloaded for packaged names",
    )


def run(args: argparse.Namespace) -> int:
    if args.details:
        return _details(args)
    rows = [_properties(name) for name in _names()]
    if args.json:
        for row in rows:
            print_json(row)
        return 0
    head = f"{'name':<28}{'tokens/s':>9}{'codebook':>10}{'bps':>8}{'latency':>10}"
    print(head + f"{'Hz in/out':>13}")
    for r in rows:
        latency = f"{r['latency_ms']:g} ms" if r["causal"] else "offline"
        rates = f"{r['sample_rate_input'] // 1000}k/{r['sample_rate_output'] // 1000}k"
        print(
            f"{r['name']:<28}{r['token_rate']:>9g}{r['codebook_size']:>10}"
            f"{r['bitrate']:>8g}{latency:>10}{rates:>13}"
        )
    return 0


def _names() -> list[str]:
    from ..pretrained import packaged_names

    return packaged_names()


def _properties(name: str) -> dict[str, Any]:
    from ..codec import FocalCodec
    from ..pretrained import skeleton

    codec = skeleton(FocalCodec, name)
    return {
        "name": name,
        "token_rate": codec.token_rate,
        "codebook_size": codec.codebook_size,
        "bits_per_token": codec.bits_per_token,
        "bitrate": codec.bitrate,
        "causal": codec.causal,
        "latency_ms": codec.latency,
        "sample_rate_input": codec.sample_rate_input,
        "sample_rate_output": codec.sample_rate_output,
    }


def _details(args: argparse.Namespace) -> int:
    """Print the card of ``args.details`` as text, or as one JSON object with --json."""
    from ..deploy.modelcard import card, render

    model: Any = args.details
    if (Path(model) / MANIFEST_NAME).is_file():
        from ..deploy.onnx_runtime import OnnxCodec

        model = OnnxCodec(model)
    try:
        onnx = not isinstance(model, str)
        if args.json:
            print_json(card(model) | ({} if onnx else {"kernels": _kernels()}))
        else:
            print(render(model))
            if not onnx:
                from .info import kernel_lines

                print("\n".join(kernel_lines(_kernels())))
    except FocalCodecError as exc:
        raise FocalCodecError(f"no model card for {args.details!r}: {exc}") from None
    return 0


def _kernels() -> dict[str, Any]:
    from ..modules import kernels

    return kernels.describe()
