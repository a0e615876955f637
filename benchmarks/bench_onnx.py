"""CPU speed of the ONNX Runtime backend against eager PyTorch.

    python benchmarks/bench_onnx.py --model focalcodec_50hz --seconds 10 --threads 1

Builds the model with random weights (speed does not depend on the values), exports it
to ONNX (or reuses ``--export-dir``), and times encoding (audio -> tokens) and decoding
(tokens -> audio) of one clip with both backends. Each figure is the best of
``--repeats`` runs after one warm-up, which filters out noise from other processes on a
shared machine. Prints a Markdown table; the real-time factor (RTF) is compute time over
audio duration.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from focalcodec import FocalCodec
from focalcodec.export import export_onnx
from focalcodec.onnx_backend import OnnxCodec


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Fastest wall and CPU (process) times of ``repeats`` calls, after a warm-up.

    On a shared machine wall time includes waiting for a core; process CPU time does
    not, so with one thread it is the better estimate of the work done.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="focalcodec_50hz")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--export-dir", type=Path, help="reuse (or create) the export here"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    codec = FocalCodec.from_config(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.export_dir or Path(tmp)
        if not (directory / "manifest.json").is_file():
            start = time.perf_counter()
            export_onnx(codec, directory)
            print(f"export: {time.perf_counter() - start:.1f} s")
        runtime = OnnxCodec(directory, threads=args.threads)
        rows = measure(codec, runtime, args)
    duration = args.seconds
    print(
        f"\n{args.model}, random weights, {duration:g} s clip, {args.threads} "
        f"thread(s), best of {args.repeats}; torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}\n"
    )
    print(
        "| stage | eager wall (s) | ONNX wall (s) | eager CPU (s) | ONNX CPU (s) "
        "| speed-up (CPU) | ONNX RTF (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for stage, (eager_wall, eager_cpu), (onnx_wall, onnx_cpu) in rows:
        print(
            f"| {stage} | {eager_wall:.3f} | {onnx_wall:.3f} | {eager_cpu:.3f} "
            f"| {onnx_cpu:.3f} | {eager_cpu / onnx_cpu:.2f}x | {onnx_cpu / duration:.3f} |"
        )


def measure(codec: FocalCodec, runtime: OnnxCodec, args) -> list[tuple]:
    sig = 0.1 * torch.randn(1, int(args.seconds * codec.sample_rate_input))
    with torch.inference_mode():
        toks = codec.sig_to_toks(sig)
        if not torch.equal(runtime.sig_to_toks(sig), toks):
            raise SystemExit(
                "ONNX tokens differ from PyTorch: not timing a wrong graph"
            )
        stages = [
            (
                "encode",
                lambda: codec.sig_to_toks(sig),
                lambda: runtime.sig_to_toks(sig),
            ),
            (
                "decode",
                lambda: codec.toks_to_sig(toks),
                lambda: runtime.toks_to_sig(toks),
            ),
        ]
        return [
            (name, best_of(eager, args.repeats), best_of(onnx, args.repeats))
            for name, eager, onnx in stages
        ]


if __name__ == "__main__":
    main()
