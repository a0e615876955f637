"""CPU speed of the ONNX Runtime backend against eager PyTorch.

    python benchmarks/bench_onnx.py --model focalcodec_50hz --seconds 10 --threads 1
    python benchmarks/bench_onnx.py --model focalcodec_50hz_2k_causal --stream-chunks 25

Builds the model with random weights (speed does not depend on the values), exports it
to ONNX (or reuses ``--export-dir``), and times with both backends:

* ``encode`` (audio -> tokens) and ``decode`` (tokens -> audio) of one clip;
* for causal models, ``stream step``: ``encode_step`` + ``decode_step`` on one 80 ms
  chunk, after enough chunks to be past the start of the stream.

Each figure is the best of ``--repeats`` calls after one warm-up call, which filters out
noise from other processes on a shared machine; process CPU time is shown next to wall
time because it does not count waiting for a core. RTF is CPU time over audio duration.
Prints a Markdown table.
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
from focalcodec.deploy.onnx_export import export_onnx
from focalcodec.deploy.onnx_runtime import OnnxCodec
from focalcodec.streaming.steps import decode_step, encode_step

Timing = tuple[float, float]  # best wall, best CPU seconds


def best_of(fn: Callable[[], object], repeats: int) -> Timing:
    """Fastest wall and process CPU times of ``repeats`` calls, after a warm-up call."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def offline_stages(codec: FocalCodec, runtime: OnnxCodec, seconds: float) -> list:
    sig = 0.1 * torch.randn(1, int(seconds * codec.sample_rate_input))
    toks = codec.sig_to_toks(sig)
    if not torch.equal(runtime.sig_to_toks(sig), toks):
        raise SystemExit("ONNX tokens differ from PyTorch: not timing a wrong graph")
    return [
        (
            "encode",
            seconds,
            lambda: codec.sig_to_toks(sig),
            lambda: runtime.sig_to_toks(sig),
        ),
        (
            "decode",
            seconds,
            lambda: codec.toks_to_sig(toks),
            lambda: runtime.toks_to_sig(toks),
        ),
    ]


def stream_stage(codec: FocalCodec, runtime: OnnxCodec, warmup: int) -> tuple:
    """One encode+decode step per call, each backend with its own running state."""
    chunk = 0.1 * torch.randn(1, codec.chunk_size)
    states: dict[str, object] = {"eager": None, "onnx": None}

    def eager() -> None:
        toks, codes, state = encode_step(codec, chunk, states["eager"])
        _, states["eager"] = decode_step(codec, codes, state)

    def onnx() -> None:
        toks, codes, state = runtime.encode_step(chunk, states["onnx"])
        _, states["onnx"] = runtime.decode_step(codes, state)

    for _ in range(warmup):
        eager(), onnx()
    seconds = codec.chunk_size / codec.sample_rate_input
    return ("stream step (80 ms chunk)", seconds, eager, onnx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="focalcodec_50hz")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--stream-chunks",
        type=int,
        default=0,
        help="causal models: time stream steps after this many warm-up chunks",
    )
    parser.add_argument(
        "--export-dir", type=Path, help="reuse (or create) the export here"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    codec = FocalCodec.from_config(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        directory = args.export_dir or Path(tmp)
        if not (directory / "manifest.json").is_file():
            start = time.perf_counter()
            export_onnx(codec, directory)
            print(f"export: {time.perf_counter() - start:.1f} s")
        runtime = OnnxCodec(directory, threads=args.threads)
        stages = offline_stages(codec, runtime, args.seconds)
        if args.stream_chunks and codec.causal:
            stages.append(stream_stage(codec, runtime, args.stream_chunks))
        rows = [
            (name, seconds, best_of(eager, args.repeats), best_of(onnx, args.repeats))
            for name, seconds, eager, onnx in stages
        ]
    print(
        f"\n{args.model}, random weights, {args.seconds:g} s clip, {args.threads} "
        f"thread(s), best of {args.repeats}; torch {torch.__version__}, "
        f"{platform.machine()}\n"
    )
    print(
        "| stage | eager wall (s) | ONNX wall (s) | eager CPU (s) | ONNX CPU (s) "
        "| speed-up (CPU) | ONNX RTF (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, seconds, (e_wall, e_cpu), (o_wall, o_cpu) in rows:
        print(
            f"| {name} | {e_wall:.3f} | {o_wall:.3f} | {e_cpu:.3f} | {o_cpu:.3f} "
            f"| {e_cpu / o_cpu:.2f}x | {o_cpu / seconds:.3f} |"
        )


if __name__ == "__main__":
    main()
