"""Peak memory of the bounded paths of docs/reliability.md (issue 25).

Each row runs in a fresh child process and reports the growth of its peak resident
memory (``ru_maxrss``) over what the process held once its imports and inputs were
ready, so that the rows measure the work itself:

* ``read_1hz``: opening a 1 Hz WAV (refused: below ``MIN_SOURCE_RATE``); before, each
  read resampled 65,536 source frames 16000 times over;
* ``read_1khz``: 10 minutes at 1000 Hz (the lowest accepted rate) read at 768 kHz;
* ``read_1024ch``: 30 s of 1024 channels read at 16 kHz;
* ``knn_bank``: kNN matching of 5 s (250 frames) and ``knn_60s`` of 60 s (3000 frames)
  against a 77 MB bank (18,800 frames of 1024 values: the width of the official
  models), with the blocked search of ``focalcodec.modules.knn`` (``new``) and the
  committed one it replaced (``old``, read from git HEAD);
* ``convert_60s``: ``focalcodec.pipeline.files.convert_file`` of 60 s of audio through
  the golden causal model with a bank of 300,000 frames (77 MB at its width, 64).

Command (from the repository root)::

    OMP_NUM_THREADS=2 nice python benchmarks/bench_bounded.py

Writes ``benchmarks/results/bench_bounded.json`` (CPU model and flags, kernel backend).
"""

from __future__ import annotations

import argparse
import importlib.util
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
from machine import machine

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden" / "causal_wavenext_50hz"
BANK_ROWS, WIDTH = 18_800, 1024  # 77 MB of float32
ROWS = [
    "read_1hz",
    "read_1khz",
    "read_1024ch",
    "knn_bank:new",
    "knn_bank:old",
    "knn_60s:new",
    "knn_60s:old",
    "convert_60s:new",
    "convert_60s:old",
]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def old_knn():
    """The knn module of git HEAD (the whole distance matrix at once)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", "HEAD:src/focalcodec/modules/knn.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "knn_head.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("focalcodec.modules.knn_head", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(row: str, tmp: Path) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    from focalcodec.errors import AudioError
    from focalcodec.files.audio import AudioReader

    name, _, impl = row.partition(":")
    out: dict = {"row": row}
    if name.startswith("read"):
        rate, channels, seconds, target = {
            "read_1hz": (1, 1, 8000, 16000),
            "read_1khz": (1000, 1, 600, 768_000),
            "read_1024ch": (16_000, 1024, 30, 16_000),
        }[name]
        path = tmp / f"{name}.wav"
        sf.write(path, np.zeros((rate * seconds, channels), np.int16), rate)
        base = peak_mb()
        start = time.time()
        try:
            with AudioReader(path, target) as reader:
                out["samples"] = sum(len(b) for b in reader.blocks(target))
        except AudioError as exc:
            out["refused"] = str(exc).split(": ", 1)[1]
        out.update(
            input_bytes=path.stat().st_size, seconds=round(time.time() - start, 2)
        )
        out["peak_growth_mb"] = round(peak_mb() - base, 1)
        return out
    knn = old_knn().knn if impl == "old" else None
    if knn is None:
        from focalcodec.modules.knn import knn
    gen = torch.Generator().manual_seed(0)
    if name.startswith("knn"):
        bank = torch.randn(BANK_ROWS, WIDTH, generator=gen)
        frames = 250 if name == "knn_bank" else 3000
        feats = torch.randn(1, frames, WIDTH, generator=gen)
        base, start = peak_mb(), time.time()
        knn(feats, bank, 4)
        out.update(bank_mb=round(bank.numel() * 4 / 1e6, 1), frames=frames)
    else:
        import focalcodec.codec as codec_module
        import focalcodec.streaming.steps as steps_module
        from focalcodec import FocalCodec
        from focalcodec.pipeline.files import convert_file

        # The search that whole calls and stream steps make (old or new).
        codec_module.knn = steps_module.knn = knn
        codec = FocalCodec.from_pretrained(GOLDEN).eval()
        bank = torch.randn(300_000, 64, generator=gen)
        src = tmp / "speech.wav"
        sf.write(src, 0.1 * np.random.default_rng(0).standard_normal(60 * 16000), 16000)
        base, start = peak_mb(), time.time()
        with torch.inference_mode():
            convert_file(src, tmp / "out.wav", codec, bank, force=True)
        out.update(bank_mb=round(bank.numel() * 4 / 1e6, 1), audio_seconds=60)
    out["seconds"] = round(time.time() - start, 2)
    out["peak_growth_mb"] = round(peak_mb() - base, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", nargs="*", default=ROWS)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks/results/bench_bounded.json"
    )
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(args.child, Path(tmp))))
        return
    rows = []
    for row in args.rows:
        done = subprocess.run(
            [sys.executable, __file__, "--child", row],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    record = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} nice "
        "python benchmarks/bench_bounded.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "note": "peak_growth_mb: growth of the child's peak RSS over what it held "
        "with its imports and inputs ready; old = the code of git HEAD",
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
