"""Streaming speed, long-audio memory, and the effect of windows on long audio.

Three parts, each printing a table and writing JSON (``--json``, default
``benchmarks/results/streaming_<part>.json``):

* ``latency``: a full-size causal model (random weights are fine for speed) streams real
  speech through :class:`focalcodec.streaming.session.StreamingSession` in 80 ms blocks after the
  attention window has filled; compute time per block (encode, decode, both) against the
  80 ms budget, per round, p50/p90/p99/max.
* ``memory``: peak RSS of a fresh process per input length (1, 10, 60 minutes by default)
  running a non-causal model over the input with :mod:`focalcodec.streaming.longform`. Modes:
  ``lazy`` reads the input file window by window and writes the output piece by piece;
  ``memory`` holds input and output in memory (the plain ``encode_long``/``decode_long``
  calls, up to ``--memory-limit`` minutes); ``whole`` is whole-input processing for
  comparison (up to ``--whole-limit`` minutes; longer does not fit).
* ``agreement``: tokens and audio of windowed processing versus whole-input processing
  on real speech, for several window plans and models (tiny golden models and a
  full-size random-weight model), with a noise baseline: whole-input processing of the
  same audio plus white noise 60 dB down.

Examples::

    nice python benchmarks/bench_streaming.py latency --rounds 3
    nice python benchmarks/bench_streaming.py memory --minutes 1 10 60
    nice python benchmarks/bench_streaming.py agreement --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from machine import machine

from focalcodec import FocalCodec
from focalcodec.deploy.fast import optimize
from focalcodec.files.audio import load_audio
from focalcodec.pretrained import skeleton
from focalcodec.streaming.longform import (
    AudioFileSignal,
    decode_long,
    encode_long,
    iter_decode_long,
)
from focalcodec.streaming.session import StreamingSession

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared"))
SPEAKER_DIR = "librispeech/dev-clean/84"


def speech(seconds: float, rate: int) -> np.ndarray:
    """Real speech (LibriSpeech dev-clean, speaker 84) at ``rate`` Hz, tiled to length."""
    files = sorted((SHARED / "audio" / SPEAKER_DIR).glob("*.flac"))
    if not files:
        sys.exit(f"no speech found in {SHARED / 'audio' / SPEAKER_DIR}")
    want = round(seconds * rate)
    parts, total = [], 0
    while total < want:
        for path in files:
            sig = load_audio(path, rate).sig
            parts.append(sig)
            total += len(sig)
            if total >= want:
                break
    return np.concatenate(parts)[:want]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms)
    out = {f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)}
    return out | {"min": float(arr.min()), "max": float(arr.max())}


# -- latency ----------------------------------------------------------------------------


def run_latency(args: argparse.Namespace) -> dict:
    from focalcodec.modules import kernels

    kernels.set_backend(args.kernels)
    codec = FocalCodec.from_config(args.config).eval()
    if args.fast != "exact":
        codec = optimize(codec, args.fast, inplace=True)
    # A timed piece is one model call: chunks_per_step blocks, with their whole budget.
    block = codec.chunk_size * args.chunks_per_step
    budget = 1000 * block / codec.sample_rate_input
    # Fill the encoder's attention window first: per-block cost grows until it is full.
    frames_per_block = block // codec.encoder.downsample_factor
    warm = codec.encoder.window_size // frames_per_block + 1
    if args.warmup is not None:
        warm = args.warmup
    seconds = (warm + args.rounds * args.blocks) * budget / 1000
    sig = torch.from_numpy(speech(seconds, codec.sample_rate_input))
    rounds = []
    with StreamingSession(codec, chunks_per_step=args.chunks_per_step) as stream:
        pieces = iter(sig.split(block))
        t0 = time.perf_counter()
        for _ in range(warm):
            stream.process(next(pieces))
        print(f"warm-up: {warm} blocks in {time.perf_counter() - t0:.0f} s", flush=True)
        for r in range(args.rounds):
            enc, dec, cpu = [], [], []
            for _ in range(args.blocks):
                piece = next(pieces)
                c0, t0 = time.process_time(), time.perf_counter()
                toks = stream.encode(piece)
                t1 = time.perf_counter()
                stream.decode(toks)
                t2, c2 = time.perf_counter(), time.process_time()
                enc.append(1000 * (t1 - t0))
                dec.append(1000 * (t2 - t1))
                cpu.append(1000 * (c2 - c0))
            both = [a + b for a, b in zip(enc, dec)]
            rounds.append(
                {
                    "total": percentiles(both),
                    # CPU time of the process (all threads) per block: on a shared
                    # host, wall time also counts waiting for a core; this does not.
                    "cpu_total": percentiles(cpu),
                    "encode": percentiles(enc),
                    "decode": percentiles(dec),
                    "rtf_median": float(np.median(both)) / budget,
                    "load_average": os.getloadavg(),
                }
            )
            p = rounds[-1]["total"]
            print(
                f"round {r + 1}: p50 {p['p50']:.1f} ms  p90 {p['p90']:.1f}  p99 "
                f"{p['p99']:.1f}  max {p['max']:.1f}  (budget {budget:.0f} ms)",
                flush=True,
            )
    print_latency_table(rounds, budget)
    return {
        "config": args.config,
        "fast_mode": args.fast,
        "kernels": kernels.backend(),
        "chunks_per_step": args.chunks_per_step,
        "budget_ms": budget,
        "warmup_blocks": warm,
        "blocks_per_round": args.blocks,
        "rounds": rounds,
        "peak_rss_mb": peak_rss_mb(),
    }


def print_latency_table(rounds: list[dict], budget: float) -> None:
    print(
        f"\n| round | encode p50 | decode p50 | total p50 | p90 | p99 | RTF (p50/{budget:.0f} ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        t = r["total"]
        print(
            f"| {i} | {r['encode']['p50']:.1f} | {r['decode']['p50']:.1f} | "
            f"{t['p50']:.1f} | {t['p90']:.1f} | {t['p99']:.1f} | {r['rtf_median']:.2f} |"
        )
    best = min(rounds, key=lambda r: r["total"]["p50"])["total"]
    med = float(np.median([r["total"]["p50"] for r in rounds]))
    print(
        f"best round p50 {best['p50']:.1f} ms, p99 {best['p99']:.1f} ms; median p50 {med:.1f} ms"
    )


# -- memory -----------------------------------------------------------------------------


def run_memory(args: argparse.Namespace) -> dict:
    results = []
    # The input rate of the model the children load (its architecture only: no weights).
    rate = skeleton(FocalCodec, args.config).sample_rate_input
    with tempfile.TemporaryDirectory(prefix="fc_bench_") as tmp:
        base = speech(args.base_seconds, rate)
        for minutes in args.minutes:
            path = Path(tmp) / f"in_{minutes:g}min.wav"
            # A long file made of the same speech over and over, written piece-wise.
            with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
                left = round(minutes * 60 * rate)
                while left > 0:
                    f.write(base[:left])
                    left -= min(left, len(base))
            for mode in args.modes:
                limit = {"whole": args.whole_limit, "memory": args.memory_limit}
                if minutes > limit.get(mode, minutes):
                    continue
                record = memory_child_run(args, path, minutes, mode, Path(tmp))
                results.append(record)
                print(
                    f"{minutes:g} min, {mode}: peak RSS {record['peak_rss_mb']:.0f} MB "
                    f"(model built: {record['model_rss_mb']:.0f} MB), "
                    f"{record['seconds']:.0f} s",
                    flush=True,
                )
            path.unlink()
    print(
        "\n| input | mode | peak RSS (MB) | after model build (MB) | increase (MB) | wall (s) |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['minutes']:g} min | {r['mode']} | {r['peak_rss_mb']:.0f} | "
            f"{r['model_rss_mb']:.0f} | {r['peak_rss_mb'] - r['model_rss_mb']:.0f} | "
            f"{r['seconds']:.0f} |"
        )
    return {
        "config": args.config,
        "chunk_seconds": args.chunk_seconds,
        "overlap_seconds": args.overlap_seconds,
        "runs": results,
    }


def memory_child_run(args, path: Path, minutes: float, mode: str, tmp: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "memory-child",
        str(path),
        "--mode",
        mode,
        "--config",
        args.config,
        "--threads",
        str(args.threads),
        "--chunk-seconds",
        str(args.chunk_seconds),
        "--overlap-seconds",
        str(args.overlap_seconds),
        "--out",
        str(tmp / "out.wav"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return {
            "minutes": minutes,
            "mode": mode,
            "error": tail,
            "peak_rss_mb": float("nan"),
            "model_rss_mb": float("nan"),
            "seconds": float("nan"),
        }
    return {
        "minutes": minutes,
        "mode": mode,
        **json.loads(done.stdout.splitlines()[-1]),
    }


def memory_child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints one JSON line."""
    torch.set_num_threads(args.threads)
    codec = FocalCodec.from_config(args.config).eval()
    model_rss = peak_rss_mb()
    start = time.perf_counter()
    rate_out = codec.sample_rate_output
    with sf.SoundFile(args.out, "w", rate_out, 1, subtype="PCM_16") as out:
        if args.mode == "whole":
            sig = torch.from_numpy(sf.read(args.input, dtype="float32")[0])[None]
            with torch.inference_mode():
                out.write(codec.sig_to_sig(sig)[0].clamp(-1, 1).numpy())
        elif args.mode == "memory":  # the plain API: input and output in memory
            sig = AudioFileSignal(args.input)[:, :]
            toks = encode_long(codec, sig, args.chunk_seconds, args.overlap_seconds)
            length = sig.shape[1] * rate_out // codec.sample_rate_input
            y = decode_long(
                codec,
                toks,
                args.chunk_seconds,
                args.overlap_seconds,
                output_length=length,
            )
            out.write(y[0].clamp(-1, 1).numpy())
        else:  # "lazy": read and write piece by piece
            source = AudioFileSignal(args.input)
            toks = encode_long(codec, source, args.chunk_seconds, args.overlap_seconds)
            length = source.shape[1] * rate_out // codec.sample_rate_input
            for piece in iter_decode_long(
                codec,
                toks,
                args.chunk_seconds,
                args.overlap_seconds,
                output_length=length,
            ):
                out.write(piece[0].clamp(-1, 1).numpy())
    record = {
        "peak_rss_mb": peak_rss_mb(),
        "model_rss_mb": model_rss,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(record))


# -- agreement --------------------------------------------------------------------------


def snr_db(ref: torch.Tensor, est: torch.Tensor) -> float:
    """10 log10 of reference energy over difference energy (higher = closer)."""
    err = float((ref - est).pow(2).sum())
    return float("inf") if err == 0 else 10 * np.log10(float(ref.pow(2).sum()) / err)


def load_model(spec: str) -> FocalCodec:
    """A golden case name or a model directory (with weights), else a config name
    (random weights)."""
    for path in (SHARED / "golden" / spec, Path(spec)):
        if path.is_dir():
            return FocalCodec.from_pretrained(path).eval()
    return FocalCodec.from_config(spec).eval()


def near_boundaries(length: int, chunk: int, overlap: int) -> torch.Tensor:
    """Mask (L,) of tokens within ``overlap`` tokens of a window boundary."""
    mask = torch.zeros(length, dtype=torch.bool)
    for b in range(chunk, length, chunk):
        mask[max(0, b - overlap) : b + overlap] = True
    return mask


def token_stats(codec, ref: torch.Tensor, toks: torch.Tensor, mask=None) -> dict:
    same = ref == toks
    bits = codec.bits_per_token
    shifts = torch.arange(bits)
    flips = ((ref[..., None] >> shifts) & 1) != ((toks[..., None] >> shifts) & 1)
    out = {
        "tokens_identical": float(same.float().mean()),
        "bits_identical": 1 - float(flips.float().mean()),
    }
    if mask is not None and mask.any():
        out["tokens_identical_near_boundaries"] = float(same[0, mask].float().mean())
        out["tokens_identical_elsewhere"] = float(same[0, ~mask].float().mean())
    return out


def run_agreement(args: argparse.Namespace) -> dict:
    results = []
    for spec in args.models:
        codec = load_model(spec)
        sig = torch.from_numpy(speech(args.seconds, codec.sample_rate_input))[None]
        with torch.inference_mode():
            ref_toks = codec.sig_to_toks(sig)
            ref_sig = codec.toks_to_sig(ref_toks)
            noise = torch.randn(sig.shape, generator=torch.Generator().manual_seed(0))
            noise *= sig.pow(2).mean().sqrt() * 10 ** (-60 / 20)
            noisy_toks = codec.sig_to_toks(sig + noise)
            noisy_sig = codec.toks_to_sig(noisy_toks)
        base = {"model": spec, "plan": "whole input + noise at -60 dB"}
        results.append(
            base
            | token_stats(codec, ref_toks, noisy_toks)
            | {"audio_snr_db": snr_db(ref_sig, noisy_sig)}
        )
        report(results[-1])
        for chunk_s, overlap_s, fade in args.plans:
            t0 = time.perf_counter()
            toks = encode_long(codec, sig, chunk_s, overlap_s, crossfade=fade)
            dec = decode_long(codec, ref_toks, chunk_s, overlap_s)
            both = decode_long(codec, toks, chunk_s, overlap_s)
            rate = codec.token_rate
            mask = near_boundaries(
                ref_toks.shape[1], round(chunk_s * rate), round(overlap_s * rate)
            )
            plan = f"chunk {chunk_s:g} s, overlap {overlap_s:g} s, " + (
                "latent cross-fade" if fade else "hard cut"
            )
            results.append(
                {"model": spec, "plan": plan}
                | token_stats(codec, ref_toks, toks, mask)
                | {
                    "decode_only_snr_db": snr_db(ref_sig, dec),
                    "audio_snr_db": snr_db(ref_sig, both),
                    "seconds": time.perf_counter() - t0,
                }
            )
            report(results[-1])
    print_agreement_table(results)
    return {"seconds_of_speech": args.seconds, "source": SPEAKER_DIR, "runs": results}


def report(r: dict) -> None:
    print(
        f"{r['model']}: {r['plan']}: tokens {100 * r['tokens_identical']:.1f}% "
        f"identical, audio SNR {r['audio_snr_db']:.1f} dB",
        flush=True,
    )


def print_agreement_table(results: list[dict]) -> None:
    print(
        "\n| model | plan | tokens identical | near boundaries / elsewhere | bits identical | decode-only SNR (dB) | encode+decode SNR (dB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        near = r.get("tokens_identical_near_boundaries")
        split = (
            ""
            if near is None
            else (f"{100 * near:.1f}% / {100 * r['tokens_identical_elsewhere']:.1f}%")
        )
        dec = r.get("decode_only_snr_db")
        print(
            f"| {r['model']} | {r['plan']} | {100 * r['tokens_identical']:.1f}% | {split} | "
            f"{100 * r['bits_identical']:.2f}% | {'' if dec is None else f'{dec:.1f}'} | "
            f"{r['audio_snr_db']:.1f} |"
        )


# -- command line -----------------------------------------------------------------------


def plan_type(text: str) -> tuple[float, float, bool]:
    """``CHUNK:OVERLAP[:hard]`` in seconds."""
    parts = text.split(":")
    return float(parts[0]), float(parts[1]), not (len(parts) > 2 and parts[2] == "hard")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    lat = sub.add_parser("latency", help="per-block compute time of a causal model")
    lat.add_argument("--config", default="focalcodec_50hz_4k_causal")
    lat.add_argument("--rounds", type=int, default=3)
    lat.add_argument(
        "--fast",
        default="exact",
        help="fast mode of focalcodec.deploy.fast (e.g. int8)",
    )
    lat.add_argument(
        "--chunks-per-step",
        type=int,
        default=1,
        help="blocks per model call (a timed piece is this many blocks)",
    )
    lat.add_argument("--blocks", type=int, default=125, help="blocks per round")
    lat.add_argument(
        "--kernels",
        default="auto",
        help="kernel backend (focalcodec.modules.kernels: auto, onednn, blas, plain)",
    )
    lat.add_argument(
        "--warmup", type=int, help="blocks before timing (default: fill the window)"
    )
    mem = sub.add_parser("memory", help="peak RSS of long inputs, non-causal model")
    mem.add_argument("--config", default="focalcodec_50hz")
    mem.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    mem.add_argument(
        "--modes", nargs="+", default=["lazy"], choices=["lazy", "memory", "whole"]
    )
    mem.add_argument(
        "--whole-limit",
        type=float,
        default=1.0,
        help="longest input (minutes) for --modes whole",
    )
    mem.add_argument(
        "--memory-limit",
        type=float,
        default=10.0,
        help="longest input (minutes) for --modes memory",
    )
    mem.add_argument("--base-seconds", type=float, default=120.0)
    child = sub.add_parser("memory-child")
    child.add_argument("input")
    child.add_argument("--out", required=True)
    child.add_argument("--mode", default="lazy")
    for p in (mem, child):
        p.add_argument("--chunk-seconds", type=float, default=30.0)
        p.add_argument("--overlap-seconds", type=float, default=2.0)
        p.add_argument("--threads", type=int, default=2)
    child.add_argument("--config", default="focalcodec_50hz")
    agr = sub.add_parser("agreement", help="windowed vs whole-input processing")
    agr.add_argument("--seconds", type=float, default=60.0)
    agr.add_argument(
        "--models",
        nargs="+",
        default=[
            "noncausal_vocos_50hz",
            "noncausal_vocos_12_5hz_legacy",
            "focalcodec_50hz",
            "focalcodec_12_5hz",
        ],
        help="golden case names, model directories (trained weights) or config names "
        "(random weights)",
    )
    agr.add_argument(
        "--plans",
        nargs="+",
        type=plan_type,
        default=[
            plan_type(p) for p in ("30:2", "30:2:hard", "10:1", "10:1:hard", "5:0.5")
        ],
        help="CHUNK:OVERLAP[:hard] in seconds",
    )
    for p in (lat, mem, agr):
        p.add_argument("--json", help="where to write the results")
        if p is not mem:
            p.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    if args.part == "memory-child":
        memory_child(args)
        return
    run = {"latency": run_latency, "memory": run_memory, "agreement": run_agreement}
    with torch.inference_mode():
        result = run[args.part](args)
    result = {
        "part": args.part,
        "command": " ".join(sys.argv),
        # Which focalcodec ran (an A/B comparison runs this script on two checkouts).
        "package": str(Path(sys.modules["focalcodec"].__file__).resolve().parent),
        "machine": machine(),
        **result,
    }
    path = Path(
        args.json or REPO / "benchmarks" / "results" / f"streaming_{args.part}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
