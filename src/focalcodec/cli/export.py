"""``focalcodec export``: write a model's ONNX graphs and manifest into a folder.

    focalcodec export --model focalcodec_50hz_2k_causal --format onnx -o exported/

The CLI imports this module only when the subcommand runs; importing it fails (and the
CLI prints the install hint) when the ``onnx`` extra is missing. After exporting, the
graphs are run in ONNX Runtime next to PyTorch on one second of noise (``--no-verify``
skips this) and the command fails if the tokens differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import onnx  # noqa: F401  (fail early, with the CLI's install hint, without the extra)
import onnxruntime  # noqa: F401
import torch
from torch import Tensor

from ..deploy.onnx_export import export_onnx
from ..deploy.onnx_runtime import OnnxCodec
from ..streaming.steps import decode_step, encode_step

__all__ = ["add_arguments", "run", "verify"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``focalcodec export``."""
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="packaged name, Hugging Face repo id, or local directory / .json",
    )
    parser.add_argument(
        "--format", choices=["onnx"], default="onnx", help="export format (onnx)"
    )
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument(
        "--no-streaming",
        action="store_true",
        help="causal models: skip the chunk-step graphs",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the comparison with PyTorch on 1 s of noise",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace graphs already in the directory"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on success"
    )


def run(args: argparse.Namespace) -> int:
    """Export, then (unless --no-verify) compare ONNX Runtime with PyTorch."""
    from ..pipeline.models import load_codec

    codec = load_codec(args.model, "cpu")
    out = Path(args.output)
    streaming = codec.causal and not args.no_streaming
    manifest = export_onnx(codec, out, force=args.force, streaming=streaming)
    if not args.quiet:
        for name, spec in manifest["graphs"].items():
            size = (out / spec["file"]).stat().st_size / 2**20
            print(f"{out / spec['file']}  ({name}, {size:.1f} MiB)")
        print(out / "manifest.json")
    if args.no_verify:
        return 0
    report = verify(codec, out)
    if not args.quiet:
        print(_describe(report))
    if not report["tokens_equal"] or not report.get("stream_tokens_equal", True):
        print(
            "focalcodec: error: the ONNX graphs do not reproduce the PyTorch tokens; "
            "please report this with the model name",
            file=sys.stderr,
        )
        return 1
    return 0


def verify(codec, directory: str | Path, seconds: float = 1.0) -> dict[str, Any]:
    """Run an export in ONNX Runtime and ``codec`` in PyTorch on the same noise.

    Returns
    -------
    ``seconds``, ``tokens_equal``, ``audio_max_abs`` (offline decoder, same tokens) and,
    for exports with step graphs, ``stream_tokens_equal`` and ``stream_audio_max_abs``
    (chunk by chunk against :mod:`focalcodec.streaming.steps`).
    """
    runtime = OnnxCodec(directory)
    chunks = max(1, round(seconds * codec.sample_rate_input / codec.chunk_size))
    generator = torch.Generator().manual_seed(0)
    sig = 0.1 * torch.randn(1, chunks * codec.chunk_size, generator=generator)
    with torch.inference_mode():
        toks = codec.sig_to_toks(sig)
        report = {
            "seconds": sig.shape[1] / codec.sample_rate_input,
            "tokens_equal": torch.equal(runtime.sig_to_toks(sig), toks),
            "audio_max_abs": _max_abs(
                runtime.toks_to_sig(toks), codec.toks_to_sig(toks)
            ),
        }
        if "stream_encoder" in runtime.manifest["graphs"]:
            report.update(_verify_stream(codec, runtime, sig))
    return report


def _verify_stream(codec, runtime: OnnxCodec, sig: Tensor) -> dict[str, Any]:
    state = runtime_state = None
    equal, worst = True, 0.0
    for piece in sig.split(codec.chunk_size, dim=1):
        toks, codes, state = encode_step(codec, piece, state)
        out, state = decode_step(codec, codes, state)
        r_toks, _, runtime_state = runtime.encode_step(piece, runtime_state)
        r_out, runtime_state = runtime.decode_step(r_toks, runtime_state)
        equal = equal and torch.equal(r_toks, toks)
        worst = max(worst, _max_abs(r_out, out))
    return {"stream_tokens_equal": equal, "stream_audio_max_abs": worst}


def _max_abs(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max()) if a.numel() else 0.0


def _describe(report: dict[str, Any]) -> str:
    def same(flag: bool) -> str:
        return "identical" if flag else "DIFFER"

    text = (
        f"verified on {report['seconds']:g} s of noise: tokens "
        f"{same(report['tokens_equal'])}, audio max abs difference "
        f"{report['audio_max_abs']:.1e}"
    )
    if "stream_tokens_equal" in report:
        text += (
            f"; streaming tokens {same(report['stream_tokens_equal'])}, audio "
            f"{report['stream_audio_max_abs']:.1e}"
        )
    return text
