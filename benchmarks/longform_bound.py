"""How far windowed processing (``focalcodec.streaming.longform``) is from whole-input
processing, on the in-repository speech and window plan that ``tests/streaming/
test_longform.py`` uses, so that the test's bounds are measured figures.

For each non-causal golden model (tiny, random weights; ``tests/data/golden``):

* decode-only SNR: ``decode_long`` of the whole-input tokens against ``toks_to_sig``;
* tokens and bits identical: ``encode_long`` against ``sig_to_toks``;
* round-trip SNR: ``sig_to_sig_long`` against ``sig_to_sig``.

Usage::

    python benchmarks/longform_bound.py --json benchmarks/results/longform_bound.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.streaming.longform import decode_long, encode_long, sig_to_sig_long

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
CLIP = "librispeech/test-other/1688/1688-142285-0000.flac"  # 15.0 s, 16 kHz
MODELS = ["noncausal_vocos_50hz", "noncausal_vocos_12_5hz_legacy"]
CHUNK_SECONDS, OVERLAP_SECONDS = 4.0, 1.0  # 15 s -> 4 windows, 3 boundaries


def snr_db(ref: torch.Tensor, est: torch.Tensor) -> float:
    noise = float((ref - est).double().square().sum())
    return (
        float("inf")
        if noise == 0
        else 10 * np.log10(float(ref.double().square().sum()) / noise)
    )


@torch.inference_mode()
def measure(codec: FocalCodec, sig: torch.Tensor) -> dict:
    plan = (CHUNK_SECONDS, OVERLAP_SECONDS)
    toks = codec.sig_to_toks(sig)
    windowed = encode_long(codec, sig, *plan)
    bits_whole = codec.toks_to_codes(toks) > 0
    bits_windowed = codec.toks_to_codes(windowed) > 0
    return {
        "tokens": toks.shape[1],
        "tokens_identical": float((windowed == toks).float().mean()),
        "bits_identical": float((bits_windowed == bits_whole).float().mean()),
        "decode_only_snr_db": snr_db(
            codec.toks_to_sig(toks), decode_long(codec, toks, *plan)
        ),
        "round_trip_snr_db": snr_db(
            codec.sig_to_sig(sig), sig_to_sig_long(codec, sig, *plan)
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="where to write the results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    audio, rate = sf.read(DATA / "audio" / CLIP, dtype="float32")
    assert rate == 16000
    sig = torch.from_numpy(audio)[None]
    results = {}
    for name in MODELS:
        codec = FocalCodec.from_pretrained(DATA / "golden" / name).eval()
        results[name] = measure(codec, sig)
        print(name, json.dumps(results[name]), flush=True)
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": 1,
        "clip": CLIP,
        "seconds": audio.size / rate,
        "chunk_seconds": CHUNK_SECONDS,
        "overlap_seconds": OVERLAP_SECONDS,
        "results": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
