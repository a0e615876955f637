"""Streamed tokens against offline tokens on real speech: what is exact, what is a tie.

A causal model streamed block by block (``StreamingSession``, 80 ms pieces) computes the
same latents as offline ``sig_to_lats`` up to float rounding: the attention and
convolutions see the same inputs but sum them in another order. A token is the signs of
its latent's components, so it can only change where a component is within rounding of
zero. This script counts, per file, the tokens and bits that differ and how far from zero
the offline latent of every differing bit is.

Models: the full-size ``focalcodec_50hz_4k_causal`` (random weights, seed 0) and the two
causal golden models of ``tests/data/golden``. Speech: the 15 clips of ``tests/data/audio``
and, when ``../shared`` is there, the 27.4 s ``multilingual/fr/conf-adminmenu-18.flac``.

Usage::

    python benchmarks/stream_ties.py --json benchmarks/results/stream_ties.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from focalcodec import FocalCodec
from focalcodec.files.audio import load_audio
from focalcodec.streaming.session import StreamEncoder

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared"))
LONG_FILE = "multilingual/fr/conf-adminmenu-18.flac"  # 27.4 s
MODELS = [
    "focalcodec_50hz_4k_causal",
    str(DATA / "golden" / "causal_wavenext_50hz"),
    str(DATA / "golden" / "causal_vocos_25hz_postnorm"),
]


def speech_files() -> list[Path]:
    """The 27.4 s file of ../shared (when there), then the clips in manifest order."""
    rows = (DATA / "audio" / "manifest.jsonl").read_text().splitlines()
    files = [DATA / "audio" / json.loads(r)["path"] for r in rows]
    if (SHARED / "audio" / LONG_FILE).is_file():
        files.insert(0, SHARED / "audio" / LONG_FILE)
    return files


def load_model(spec: str) -> FocalCodec:
    torch.manual_seed(0)
    if Path(spec).is_dir():
        return FocalCodec.from_pretrained(spec).eval()
    return FocalCodec.from_config(spec).eval()


@torch.inference_mode()
def compare(codec: FocalCodec, sig: torch.Tensor) -> dict:
    """Stream ``sig`` (1, N) in 80 ms pieces; compare with offline tokens and latents."""
    stream = StreamEncoder(codec)
    pieces = [stream.encode(p) for p in sig.split(codec.chunk_size, dim=1)]
    streamed = torch.cat([*pieces, stream.flush()], 1)
    offline = codec.sig_to_toks(sig)
    lats = codec.sig_to_lats(sig)
    bits = codec.toks_to_codes(streamed) != codec.toks_to_codes(offline)
    tie_lats = lats.abs()[bits]
    return {
        "tokens": int(offline.numel()),
        "tokens_differing": int((streamed != offline).sum()),
        "bits_differing": int(bits.sum()),
        "max_abs_latent_of_differing_bits": (
            float(tie_lats.max()) if tie_lats.numel() else None
        ),
        "latents_within_1e-5_of_zero": int((lats.abs() < 1e-5).sum()),
        "min_abs_latent": float(lats.abs().min()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="where to write the results")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="per model, stop taking files once this much speech has been streamed",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = speech_files()
    results = {}
    for spec in args.models:
        codec = load_model(spec)
        rows = []
        for path in files:
            done = sum(r["seconds"] for r in rows)
            if args.max_seconds is not None and done >= args.max_seconds:
                break
            sig = torch.from_numpy(load_audio(path, codec.sample_rate_input).sig)[None]
            row = {"file": path.name, "seconds": sig.shape[1] / codec.sample_rate_input}
            rows.append(row | compare(codec, sig))
            print(Path(spec).name, json.dumps(rows[-1]), flush=True)
        total = sum(r["tokens"] for r in rows)
        differing = sum(r["tokens_differing"] for r in rows)
        ties = [
            r["max_abs_latent_of_differing_bits"]
            for r in rows
            if r["max_abs_latent_of_differing_bits"] is not None
        ]
        results[Path(spec).name] = {
            "files": rows,
            "tokens": total,
            "tokens_differing": differing,
            "max_abs_latent_of_differing_bits": max(ties) if ties else None,
        }
        print(Path(spec).name, f"{differing} of {total} tokens differ", flush=True)
    record = {
        "command": " ".join(
            ["python benchmarks/stream_ties.py", *(argv or sys.argv[1:])]
        ),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
