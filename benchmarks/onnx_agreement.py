"""How closely ONNX Runtime reproduces eager PyTorch: tokens and audio, offline and streamed.

    python benchmarks/onnx_agreement.py --json benchmarks/results/onnx_agreement_golden.json
    python benchmarks/onnx_agreement.py --models focalcodec_50hz_2k_causal --seconds 3

Each model (a golden case of ``tests/data/golden`` by default, or a packaged name built
with seeded random weights) is exported to a temporary folder and run with both
backends on low noise: offline at several lengths (``--lengths``, default the graph's
shortest input and three others, 3 items each), and, for causal models, chunk by chunk
through ``encode_step`` / ``decode_step``. Reported per model: whether the tokens are
identical and the largest absolute audio difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from focalcodec import FocalCodec
from focalcodec.deploy.onnx_export import export_onnx
from focalcodec.deploy.onnx_runtime import OnnxCodec

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
CASES = [
    "noncausal_vocos_50hz",
    "noncausal_vocos_12_5hz_legacy",
    "causal_wavenext_50hz",
    "causal_vocos_25hz_postnorm",
]


def load(spec: str) -> FocalCodec:
    if (GOLDEN / spec).is_dir():
        return FocalCodec.from_pretrained(GOLDEN / spec).eval()
    torch.manual_seed(0)
    return FocalCodec.from_config(spec).eval()


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def measure(codec: FocalCodec, runtime: OnnxCodec, lengths, chunks: int) -> dict:
    gen = torch.Generator().manual_seed(1)
    same, worst = True, 0.0
    for n in lengths or [runtime.min_samples, 4321, 12345, 40000]:
        sig = 0.1 * torch.randn(3, n, generator=gen)
        toks = codec.sig_to_toks(sig)
        same &= torch.equal(runtime.sig_to_toks(sig), toks)
        worst = max(worst, max_abs(runtime.toks_to_sig(toks), codec.toks_to_sig(toks)))
    out = {"offline_tokens_identical": bool(same), "offline_audio_max_abs": worst}
    if not codec.causal:
        return out
    sig = 0.1 * torch.randn(2, chunks * codec.chunk_size, generator=gen)
    state = runtime_state = None
    same, worst = True, 0.0
    for piece in sig.split(codec.chunk_size, dim=1):
        toks, codes, state = codec.encode_step(piece, state)
        audio, state = codec.decode_step(codes, state)
        r_toks, r_codes, runtime_state = runtime.encode_step(piece, runtime_state)
        r_audio, runtime_state = runtime.decode_step(r_codes, runtime_state)
        same &= torch.equal(r_toks, toks)
        worst = max(worst, max_abs(r_audio, audio))
    out.update(stream_tokens_identical=bool(same), stream_audio_max_abs=worst)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=CASES)
    parser.add_argument("--lengths", nargs="+", type=int, help="offline input lengths")
    parser.add_argument("--seconds", type=float, help="one offline length, in seconds")
    parser.add_argument("--chunks", type=int, default=12, help="streamed chunks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="where to write the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
    results = {}
    for spec in args.models:
        codec = load(spec)
        lengths = args.lengths
        if args.seconds:
            lengths = [round(args.seconds * codec.sample_rate_input)]
        with tempfile.TemporaryDirectory(prefix="fc_onnx_") as folder:
            export_onnx(codec, folder)
            runtime = OnnxCodec(folder, threads=args.threads)
            with torch.inference_mode():
                results[spec] = measure(codec, runtime, lengths, args.chunks)
        print(spec, results[spec], flush=True)
    report = {
        "command": " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
