"""Per-tick time of batched streaming steps against one-stream-at-a-time steps.

A full-size causal model (random weights: speed does not depend on them) holds N live
streams. Each tick every stream encodes one 80 ms block of real speech and decodes the
tokens it got (live resynthesis). Two ways of stepping them:

* ``batched``: one :class:`focalcodec.streaming.batch.StreamBatch` call per direction
  for all N streams;
* ``solo``: N one-row steps (``codec.encode_step`` / ``codec.decode_step``), one stream
  after the other, as a server without batching would run them.

Batched and solo ticks alternate, so that both see the same load of the machine.

First, an agreement check (``--check-ticks``): streams that join at different ticks
and sit out some, tokens and audio against a solo session each. Timing starts once
every attention window is full (the steady state of a long
session: the most keys per step). Per tick: encode, decode and both, median and p90
over the timed ticks. A stream is real time while its block is done within the block's
duration, so a way of stepping holds ``floor`` of the largest N whose tick takes at most
80 ms; the JSON gives, per mode, the largest N of those measured that holds in real
time each way, and the ratio. It also names the CPU, its vector flags, the kernel backend
of :mod:`focalcodec.modules.kernels`, the thread count and the load average.

Example::

    python benchmarks/bench_batch_step.py --streams 1 2 4 8 16 --modes exact int8 \\
        --json benchmarks/results/batch_step_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.deploy.fast import optimize
from focalcodec.modules import kernels
from focalcodec.streaming.batch import StreamBatch
from focalcodec.streaming.session import StreamingSession

REPO = Path(__file__).resolve().parents[1]
CLIP = (
    REPO / "tests" / "data" / "audio" / "librispeech/dev-clean/84/84-121123-0000.flac"
)


def speech(samples: int) -> torch.Tensor:
    """Real speech, looped to ``samples`` samples (16 kHz)."""
    sig, rate = sf.read(CLIP, dtype="float32")
    assert rate == 16000
    reps = -(-samples // len(sig))
    return torch.from_numpy(np.tile(sig, reps)[:samples].copy())


def summary(times: list[float]) -> dict:
    ms = sorted(t * 1e3 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
    }


class Streams:
    """``most`` warmed streams stepped both ways: one StreamBatch, and one-row states.

    Stream ``key`` reads the speech from its own offset; both ways get the same blocks.
    """

    def __init__(self, codec, most: int, warm: int, sig) -> None:
        self.codec, self.sig, self.chunk = codec, sig, codec.chunk_size
        self.offsets = [
            (key * 7919 * self.chunk) % (len(sig) // 2) for key in range(most)
        ]
        self.batch = StreamBatch(codec)
        for key in range(most):
            self.batch.open(key)
        for step in range(warm):  # fill every window, tick by tick
            self.batched(most, step)
        self.enc: list = [None] * most
        self.dec: list = [None] * most
        with torch.inference_mode():  # the same, a whole warm-up at once per stream
            for key in range(most):
                blocks = torch.cat([self.block(key, s) for s in range(warm)])
                toks, _, self.enc[key] = codec.encode_step(blocks[None])
                _, self.dec[key] = codec.decode_step(toks)

    def block(self, key: int, step: int) -> torch.Tensor:
        start = (self.offsets[key] + step * self.chunk) % (len(self.sig) - self.chunk)
        return self.sig[start : start + self.chunk]

    def batched(self, n: int, step: int) -> tuple[float, float]:
        """One tick of streams 0..n-1 through the batch: (encode, decode) seconds."""
        blocks = {key: self.block(key, step) for key in range(n)}
        t0 = time.perf_counter()
        toks = self.batch.encode(blocks)
        t1 = time.perf_counter()
        self.batch.decode(toks)
        return t1 - t0, time.perf_counter() - t1

    def solo(self, n: int, step: int) -> tuple[float, float]:
        """The same tick as n one-row steps, one stream after the other."""
        enc = dec = 0.0
        with torch.inference_mode():
            for key in range(n):
                t0 = time.perf_counter()
                toks, _, self.enc[key] = self.codec.encode_step(
                    self.block(key, step)[None], self.enc[key]
                )
                t1 = time.perf_counter()
                _, self.dec[key] = self.codec.decode_step(toks, self.dec[key])
                enc, dec = enc + t1 - t0, dec + time.perf_counter() - t1
        return enc, dec


def tick_times(streams: Streams, counts: list[int], warm: int, ticks: int) -> dict:
    """Per N: batched and solo tick times, alternating tick by tick (same load)."""
    out, step = {}, warm
    for n in sorted(counts, reverse=True):
        times: dict = {"batched": ([], []), "solo": ([], [])}
        for i in range(ticks + 2):  # two untimed ticks: the other streams go idle
            for way in ("batched", "solo"):
                enc, dec = getattr(streams, way)(n, step)
                if i >= 2:
                    times[way][0].append(enc)
                    times[way][1].append(dec)
            step += 1
        out[n] = {way: rows(*pair) for way, pair in times.items()}
        both = {way: out[n][way]["both"]["median_ms"] for way in times}
        print(f"  N={n:2d}: median tick {both} ms", flush=True)
    return out


def agreement(codec, ticks: int, sig) -> dict:
    """Streams that join at different ticks and sit out some, against solo sessions.

    Four streams join at ticks 0, 3, 40 and 100 and run to tick ``ticks`` (past the
    attention window: a full window is 128 blocks), each sitting out every seventh tick
    from its own phase, then end with a partial block (``flush``). Returns the token
    mismatches and the largest audio difference against a one-stream
    :class:`StreamingSession` per stream fed the same audio.
    """
    chunk = codec.chunk_size
    joins = [0, 3, 40, 100]
    plans = {}
    for key, join in enumerate(joins):
        blocks = ticks - join - (ticks - join) // 7
        start = key * 40 * chunk
        plans[key] = (join, sig[start : start + blocks * chunk + 321 * (key + 1)])
    batch, done = StreamBatch(codec), dict.fromkeys(plans, 0)
    got = {key: ([], []) for key in plans}
    for tick in range(ticks + 8):
        blocks = {}
        for key, (join, audio) in plans.items():
            if join == tick:
                batch.open(key)
            if key in batch and (tick + key) % 7 and done[key] + chunk <= len(audio):
                blocks[key] = audio[done[key] : done[key] + chunk]
                done[key] += chunk
        toks = batch.encode(blocks)
        for key, out in batch.decode(toks).items():
            got[key][0].append(toks[key])
            got[key][1].append(out)
        for key, (_, audio) in plans.items():
            if key in batch and len(audio) - done[key] < chunk:
                tail = batch.flush(key, audio[done[key] :])
                got[key][0].append(tail.toks)
                got[key][1].append(tail.sig)
    mismatches, worst, total = 0, 0.0, 0
    for key, (_, audio) in plans.items():
        with StreamingSession(codec) as session:
            toks = session.encode(audio)
            out = session.decode(toks)
            tail = session.flush()
        toks, out = torch.cat([toks, tail.toks], 1)[0], torch.cat([out, tail.sig], 1)[0]
        mine = torch.cat(got[key][0])
        mismatches += int((mine != toks).sum())
        total += toks.numel()
        worst = max(worst, float((torch.cat(got[key][1]) - out).abs().max()))
    return {
        "streams": len(plans),
        "joins": joins,
        "ticks": ticks,
        "tokens": total,
        "token_mismatches": mismatches,
        "max_abs_audio_diff": worst,
    }


def rows(enc: list[float], dec: list[float]) -> dict:
    return {
        "encode": summary(enc),
        "decode": summary(dec),
        "both": summary([e + d for e, d in zip(enc, dec)]),
    }


def realtime(table: dict, budget_ms: float) -> int:
    """Largest N measured whose median tick (encode + decode) fits the budget."""
    fits = [n for n, row in table.items() if row["both"]["median_ms"] <= budget_ms]
    return max(fits, default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="focalcodec_50hz_4k_causal")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--modes", nargs="+", default=["exact", "int8"])
    parser.add_argument("--ticks", type=int, default=20, help="timed ticks per N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--check-ticks",
        type=int,
        default=160,
        help="ticks of the agreement check against solo sessions (0: skip it)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    exact = FocalCodec.from_config(args.config).eval()
    chunk, budget = exact.chunk_size, exact.latency
    window = exact.config["encoder_config"]["window_size"]
    lookahead = exact.config["encoder_config"]["lookahead_size"]
    warm = window // (1 + lookahead) + 2  # blocks until the window is full
    sig = speech(60 * exact.sample_rate_input)
    load_before = os.getloadavg()
    results, checks = [], {}
    for mode in args.modes:
        codec = exact if mode == "exact" else optimize(exact, mode)
        print(f"{mode}:", flush=True)
        if args.check_ticks:
            checks[mode] = agreement(codec, args.check_ticks, sig)
            print(f"  agreement with solo sessions: {checks[mode]}", flush=True)
        streams = Streams(codec, max(args.streams), warm, sig)
        table = tick_times(streams, args.streams, warm, args.ticks)
        del streams
        for n in args.streams:
            row = table[n]
            ratio = (
                row["solo"]["both"]["median_ms"] / row["batched"]["both"]["median_ms"]
            )
            results.append(
                {
                    "mode": mode,
                    "streams": n,
                    **row,
                    "solo_over_batched": round(ratio, 2),
                }
            )
        held = (
            {
                way: realtime({n: table[n][way] for n in table}, budget)
                for way in table[1]
            }
            if 1 in table
            else {}
        )
        print(
            f"  real time (median tick <= {budget:.0f} ms): {held} streams", flush=True
        )
    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": args.config,
        "weights": "random (FocalCodec.from_config; speed does not depend on them)",
        "block_ms": budget,
        "chunk_size": chunk,
        "warm_blocks": warm,
        "timed_ticks": args.ticks,
        "cpu": kernels.describe()["cpu"],
        "kernel_backend": kernels.backend(),
        "torch": torch.__version__,
        "threads": args.threads,
        "platform": platform.platform(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "agreement": checks,
        "rows": results,
        "realtime_streams": {
            mode: {
                way: realtime(
                    {r["streams"]: r[way] for r in results if r["mode"] == mode},
                    budget,
                )
                for way in ("batched", "solo")
            }
            for mode in args.modes
        },
    }
    text = json.dumps(record, indent=1) + "\n"
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
