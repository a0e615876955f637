"""Resident memory over time of one ``focalcodec encode`` of a long input.

Where ``bench_memory.py`` gives one peak per length, this samples the process's RSS
every 0.2 s while the command line's own entry point encodes N minutes of real speech
(the clips of ``tests/data/audio`` tiled to length), so that warm-up and any growth with
length show. ``--no-trim`` turns off :func:`focalcodec.runtime.release_free_memory` (the
glibc ``malloc_trim`` after every window) to show what it does.

Example (what docs/reliability.md reports)::

    OMP_NUM_THREADS=2 python benchmarks/memory_trace.py \\
        focalcodec_50hz_2k_causal --minutes 6 \\
        --json benchmarks/results/memory_trace_causal_trim.json
    OMP_NUM_THREADS=2 python benchmarks/memory_trace.py \\
        focalcodec_50hz_2k_causal --minutes 6 \\
        --no-trim --json benchmarks/results/memory_trace_causal_no_trim.json

(a packaged name is built full size with random weights, as in ``bench_memory.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_memory import random_weight_model, write_speech  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", help="model folder, or a packaged name (built with random weights)"
    )
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--no-trim", action="store_true")
    parser.add_argument(
        "--every", type=float, default=0.2, help="seconds between samples"
    )
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    from focalcodec import runtime
    from focalcodec.cli import main as cli

    model = random_weight_model(
        args.model, Path(tempfile.gettempdir()) / "focalcodec_bench_models"
    )
    if args.no_trim:
        runtime._malloc_trim = lambda: None
    trace: list[tuple[float, float]] = []
    done = threading.Event()

    def sample(start: float) -> None:
        while not done.is_set():
            trace.append((round(time.perf_counter() - start, 2), round(rss_mb(), 1)))
            done.wait(args.every)

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "in.wav"
        write_speech(wav, args.minutes)
        start = time.perf_counter()
        sampler = threading.Thread(target=sample, args=(start,), daemon=True)
        sampler.start()
        status = cli(
            ["encode", str(wav), "-o", f"{tmp}/out.fcz", "-m", str(model), "-q"]
        )
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    values = [v for _, v in trace]
    tenths = [values[round(i * (len(values) - 1) / 10)] for i in range(11)]
    record = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
        "benchmarks/memory_trace.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "model": args.model,
        "minutes": args.minutes,
        "trim": not args.no_trim,
        "exit_status": status,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": max(values),
        "rss_mb_at_tenths_of_the_run": tenths,
        "trace": trace,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "trace"}))


if __name__ == "__main__":
    main()
