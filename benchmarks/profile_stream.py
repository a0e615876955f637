"""Per-chunk compute time of streaming steps, fast modes side by side.

A full-size causal model (random weights are fine for speed) streams noise through
``encode_step`` + ``decode_step`` in 80 ms chunks; the modes run interleaved, one chunk
each in turn, so that machine drift hits them alike. Times are reported for the chunks
after ``--warmup`` (the attention window fills after 128 chunks).

With ``--ops N``, N more chunks per mode then run under ``torch.profiler`` and the
operators called from Python are listed by time per chunk, split by input shape (which
tells, e.g., the front-end convolutions from the 512-tap depthwise ones).

``--kernels`` runs each mode once per kernel backend
(:mod:`focalcodec.modules.kernels`), interleaved as well.

Example::

    python benchmarks/profile_stream.py --modes exact int8 --chunks 300
    python benchmarks/profile_stream.py --modes int8 --ops 20
    python benchmarks/profile_stream.py --modes exact --kernels onednn plain
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from focalcodec import FocalCodec
from focalcodec.deploy.fast import optimize
from focalcodec.modules import kernels
from focalcodec.streaming.steps import decode_step, encode_step


def percentiles(times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    pick = [ms[min(len(ms) - 1, int(q * len(ms)))] for q in (0.9, 0.99)]
    return (
        f"p50 {statistics.median(ms):6.1f}  p90 {pick[0]:6.1f}  p99 {pick[1]:6.1f}  "
        f"max {ms[-1]:6.1f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="focalcodec_50hz_4k_causal")
    p.add_argument("--modes", nargs="+", default=["int8"])
    p.add_argument("--kernels", nargs="+", default=["auto"], help="kernel backends")
    p.add_argument("--chunks", type=int, default=170)
    p.add_argument("--warmup", type=int, default=135)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ops", type=int, default=0, help="chunks to profile per mode")
    p.add_argument("--top", type=int, default=15, help="operator rows to print")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    codec = FocalCodec.from_config(args.model).eval()
    built = {mode: optimize(codec, mode) for mode in args.modes}
    # One row per (mode, backend): "int8" or "exact@onednn".
    runs = [(m, k) for m in args.modes for k in args.kernels]
    models = {_row(m, k, args.kernels): built[m] for m, k in runs}
    backends = {_row(m, k, args.kernels): k for m, k in runs}
    chunk = codec.chunk_size
    sig = 0.1 * torch.randn(1, args.chunks * chunk)
    states = dict.fromkeys(models)
    times: dict[str, list[float]] = {mode: [] for mode in models}
    with torch.inference_mode():
        for i, piece in enumerate(sig.split(chunk, dim=1)):
            order = list(models) if i % 2 else list(reversed(models))
            for mode in order:
                with kernels.use(backends[mode]):
                    start = time.perf_counter()
                    _, codes, state = encode_step(models[mode], piece, states[mode])
                    _, states[mode] = decode_step(models[mode], codes, state)
                    times[mode].append(time.perf_counter() - start)
    budget = 1000 * chunk / codec.sample_rate_input
    print(f"{args.model}, {args.threads} threads, budget {budget:.0f} ms per chunk")
    print(f"kernels: {kernels.describe()['cpu']['model']}, auto = {kernels.backend()}")
    for mode, spent in times.items():
        print(f"{mode:>13}: {percentiles(spent[args.warmup :])}")
    if args.ops:
        more = (0.1 * torch.randn(1, args.ops * chunk)).split(chunk, dim=1)
        for mode, model in models.items():
            with kernels.use(backends[mode]):
                print_operators(mode, model, more, states[mode], args.top)


def _row(mode: str, backend: str, backends: list[str]) -> str:
    return mode if len(backends) == 1 else f"{mode}@{backend}"


def print_operators(mode: str, model, pieces, state, top: int) -> None:
    """Time per chunk of the operators called from Python, by name and input shape."""
    from torch.profiler import ProfilerActivity, profile

    with (
        torch.inference_mode(),
        profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof,
    ):
        for piece in pieces:
            _, codes, state = encode_step(model, piece, state)
            _, state = decode_step(model, codes, state)
    spent: dict[tuple[str, str], list[float]] = {}
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        shape = str(event.input_shapes[0]) if event.input_shapes else ""
        entry = spent.setdefault((event.name, shape), [0.0, 0])
        entry[0] += event.cpu_time_total / 1000 / len(pieces)
        entry[1] += 1 / len(pieces)
    total = sum(ms for ms, _ in spent.values())
    print(f"\n{mode}: operators per chunk, {total:.1f} ms in all (profiler included)")
    rows = sorted(spent.items(), key=lambda item: -item[1][0])[:top]
    for (name, shape), (ms, calls) in rows:
        print(f"  {ms:6.2f} ms  {calls:5.1f} calls  {name} {shape}")


if __name__ == "__main__":
    main()
