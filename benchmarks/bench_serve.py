"""How many live sessions ``focalcodec serve`` holds in real time, and a soak test.

Loopback clients (``focalcodec.serve.client``, one process, asyncio) stream real speech
from ``../shared/audio`` paced in real time to a server started as ``focalcodec serve``
in a process of its own, each session resynthesising (audio -> tokens -> audio). A
session keeps up when the p99 of its block-to-result times (from sending a block's last
sample to receiving its decoded audio) is within the block's duration (80 ms).

``capacity``: for each fast mode and batching on (``--max-batch 64``) or off
(``--max-batch 1``, one session stepped at a time), 1, 2, 3... concurrent sessions
until one falls behind; per count, latency p50/p99/max over every block, the server's
CPU seconds per second and session, and its memory per session.

``soak``: ``--clients`` sessions back to back for ``--soak-minutes``, restarting each
as it ends; every session must end normally, the server's RSS is sampled, and the
open-sessions metric must return to 0.

Examples (the lead runs the full-size ones on a quiet machine)::

    python benchmarks/bench_serve.py capacity --model focalcodec_50hz_4k_causal \\
        --random-weights --fast exact int8 --seconds 20
    python benchmarks/bench_serve.py soak --model focalcodec_50hz_4k_causal \\
        --random-weights --fast int8 --clients 3 --soak-minutes 10
    python benchmarks/bench_serve.py capacity --model tests/data/golden/causal_wavenext_50hz \\
        --seconds 6 --max-clients 8 --json benchmarks/results/serve_capacity_tiny.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "src"))

from focalcodec.files.audio import load_audio  # noqa: E402
from focalcodec.serve.client import stream_audio  # noqa: E402

WARMUP_BLOCKS = 12  # the first ~1 s of a session: its attention window filling


def machine(threads: int) -> dict:
    """The CPU (model, AVX2/AVX-512/VNNI), the kernel backend, versions, the load."""
    import torch

    from focalcodec.modules import calibration, kernels

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "load_average_before": os.getloadavg(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpu_flags": calibration.cpu_info(),
        "kernels": kernels.describe(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def speech_clips(count: int, seconds: float, first: int = 0) -> list[np.ndarray]:
    """``count`` different stretches of real 16 kHz speech, each ``seconds`` long,
    from the ``first``-th file of the manifest on."""
    rows = [
        json.loads(line)
        for line in (SHARED / "audio" / "manifest.jsonl").read_text().splitlines()
    ]
    files = [SHARED / "audio" / r["path"] for r in rows if r["duration"] >= 3]
    want = round(seconds * 16000)
    clips, at = [], first
    for _ in range(count):
        parts, total = [], 0
        while total < want:
            sig = load_audio(files[at % len(files)], 16000).sig
            at += 1
            parts.append(sig)
            total += len(sig)
        clips.append(np.concatenate(parts)[:want].astype(np.float32))
    return clips


# -- the server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``focalcodec serve`` in a process of its own, with its CPU time and memory."""

    def __init__(self, args: argparse.Namespace, fast: str, max_batch: int) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "focalcodec", "serve", "-m", args.model]
        command += ["--port", str(self.port), "--fast", fast, "-q"]
        command += ["--max-batch", str(max_batch), "--threads", str(args.threads)]
        command += [
            "--max-sessions",
            str(args.max_clients + 4),
            "--device",
            args.device,
        ]
        if args.random_weights:
            command.append("--random-weights")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit("the server exited before it answered")
            try:
                with urllib.request.urlopen(self.http("/healthz"), timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        sys.exit("the server never answered /healthz")

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = (int(v) for v in fields.split()[11:13])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def open_sessions(self) -> float:
        with urllib.request.urlopen(self.http("/metrics"), timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("focalcodec_serve_open_sessions{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# -- the clients -------------------------------------------------------------------------


async def sessions(url: str, clips: list[np.ndarray]) -> list:
    """Every clip as one real-time resynthesis session, all at once (their starts
    spread over one block, as independent clients' would be)."""

    async def one(i: int, sig: np.ndarray):
        await asyncio.sleep(0.08 * i / len(clips))
        return await stream_audio(
            url, sig, 16000, direction="resynth", realtime=True, piece_seconds=0.02
        )

    return await asyncio.gather(*(one(i, s) for i, s in enumerate(clips)))


def summarize(results: list, budget_ms: float) -> dict:
    """Latency figures over every session's blocks past the warm-up."""
    per_session = [np.asarray(r.latencies[WARMUP_BLOCKS:]) * 1000 for r in results]
    every = np.concatenate([p for p in per_session if len(p)] or [np.zeros(0)])
    p99s = [float(np.percentile(p, 99)) for p in per_session if len(p)]
    ok = all(r.ok for r in results)
    return {
        "sessions_ok": ok,
        "blocks": int(len(every)),
        "p50_ms": float(np.percentile(every, 50)) if len(every) else None,
        "p99_ms": float(np.percentile(every, 99)) if len(every) else None,
        "max_ms": float(every.max()) if len(every) else None,
        "worst_session_p99_ms": max(p99s) if p99s else None,
        "real_time": ok and bool(p99s) and max(p99s) <= budget_ms,
    }


def capacity_row(args, fast: str, batching: bool) -> dict:
    """Sessions 1, 2, ... on one server until the worst session falls behind."""
    server = ServerProcess(args, fast, 64 if batching else 1)
    budget = 80.0
    steps, held = [], 0
    try:
        idle_rss = server.rss_mb()
        for count in range(1, args.max_clients + 1):
            clips = speech_clips(count, args.seconds)
            cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
            results = asyncio.run(sessions(server.url, clips))
            wall = time.perf_counter() - wall0
            cpu = server.cpu_seconds() - cpu0
            step = {"sessions": count, **summarize(results, budget)}
            step["server_cpu_per_session"] = cpu / wall / count  # cores per session
            step["server_rss_mb"] = server.rss_mb()
            step["rss_per_session_mb"] = (step["server_rss_mb"] - idle_rss) / count
            steps.append(step)
            print(json.dumps({"fast": fast, "batching": batching, **step}), flush=True)
            if not step["real_time"]:
                break
            held = count
    finally:
        server.stop()
    return {
        "fast": fast,
        "batching": batching,
        "max_batch": 64 if batching else 1,
        "real_time_sessions": held,
        "idle_rss_mb": idle_rss,
        "steps": steps,
    }


def capacity(args: argparse.Namespace) -> dict:
    rows = [
        capacity_row(args, fast, batching == "on")
        for fast in args.fast
        for batching in args.batching
    ]
    for row in rows:
        print(
            f"{row['fast']:>6} batching {'on ' if row['batching'] else 'off'}: "
            f"{row['real_time_sessions']} real-time sessions"
        )
    return {"part": "capacity", "budget_ms": 80.0, "rows": rows}


# -- the soak --------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> dict:
    server = ServerProcess(args, args.fast[0], 64)
    samples, outcomes = [], []
    end = time.monotonic() + 60 * args.soak_minutes

    async def client(i: int) -> None:
        turn = 0
        while time.monotonic() < end:
            turn += 1
            (clip,) = speech_clips(1, args.seconds, first=17 * i + 5 * turn)
            result = await stream_audio(
                server.url, clip, 16000, direction="resynth", realtime=True
            )
            outcomes.append((result.ok, result.close_code, summarize([result], 80)))

    async def sampler() -> None:
        while time.monotonic() < end:
            samples.append((time.monotonic(), server.rss_mb(), server.cpu_seconds()))
            await asyncio.sleep(10)

    async def main() -> None:
        await asyncio.gather(sampler(), *(client(i) for i in range(args.clients)))

    try:
        asyncio.run(main())
        time.sleep(2)
        left_open = server.open_sessions()
    finally:
        server.stop()
    rss = [s[1] for s in samples]
    minute = max(1, len(rss) // max(args.soak_minutes, 1))
    return {
        "part": "soak",
        "fast": args.fast[0],
        "clients": args.clients,
        "minutes": args.soak_minutes,
        "sessions": len(outcomes),
        "sessions_dropped": sum(not ok for ok, _, _ in outcomes),
        "close_codes": sorted({code for _, code, _ in outcomes}),
        "open_sessions_after": left_open,
        "rss_mb_first_minute": float(np.mean(rss[:minute])) if rss else None,
        "rss_mb_last_minute": float(np.mean(rss[-minute:])) if rss else None,
        "rss_mb_samples": rss,
        "worst_session_p99_ms": max(
            (o[2]["worst_session_p99_ms"] or 0 for o in outcomes), default=None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("capacity", "soak"))
    parser.add_argument("--model", default="focalcodec_50hz_4k_causal")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--fast", nargs="+", default=["exact", "int8"])
    parser.add_argument(
        "--batching", nargs="+", choices=("on", "off"), default=["on", "off"]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    parser.add_argument("--max-clients", type=int, default=16)
    parser.add_argument("--clients", type=int, default=2, help="soak: sessions at once")
    parser.add_argument("--soak-minutes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    record = {"machine": machine(args.threads), "model": args.model}
    record["random_weights"] = args.random_weights
    record |= capacity(args) if args.part == "capacity" else soak(args)
    record["load_average_after"] = os.getloadavg()
    name = "serve_capacity.json" if args.part == "capacity" else "serve_soak.json"
    path = args.json or REPO / "benchmarks" / "results" / name
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
