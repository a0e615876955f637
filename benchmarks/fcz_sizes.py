"""Sizes of real ``.fcz`` files: 10 s of speech through every packaged architecture.

Each model is built at full size with random weights (a file's size does not depend on
the weights) under its packaged name, so the header carries the name as it does for a
model loaded from the Hub. The input is 10.0 s of LibriSpeech from ``tests/data``, given
once at 16 kHz and once resampled to 48 kHz (the header then records a 3-byte source
rate). Written: header bytes, tokens, total bytes, and the nominal bitrate times the
duration.

Usage::

    python benchmarks/fcz_sizes.py --json benchmarks/results/fcz_sizes.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import soundfile as sf
import soxr
import torch

from focalcodec import FocalCodec, list_models
from focalcodec.fcz import bitstream
from focalcodec.pipeline.compress import compress

REPO = Path(__file__).resolve().parents[1]
CLIP = "librispeech/train-clean-100/1081/1081-125237-0000.flac"  # 10.34 s
SECONDS = 10.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="where to write the results")
    parser.add_argument("--models", nargs="+", default=list_models())
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    sig, rate = sf.read(REPO / "tests" / "data" / "audio" / CLIP, dtype="float32")
    assert rate == 16000
    sig16 = sig[: int(SECONDS * rate)]
    sig48 = soxr.resample(sig16, 16000, 48000)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        codec = FocalCodec.from_config(name).eval()
        for source_rate, audio in ((16000, sig16), (48000, sig48)):
            data = compress(audio, source_rate, codec)
            container = bitstream.loads(data)
            header = len(container.header.to_bytes())
            rows.append(
                {
                    "model": name,
                    "source_sample_rate": source_rate,
                    "header_name": container.header.model_name,
                    "header_bytes": header,
                    "tokens": int(container.toks.size),
                    "bytes": len(data),
                    "nominal_bytes": codec.bitrate * SECONDS / 8,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        del codec
    record = {
        "command": " ".join(
            ["python benchmarks/fcz_sizes.py", *(argv or sys.argv[1:])]
        ),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "clip": CLIP,
        "seconds": SECONDS,
        "results": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
