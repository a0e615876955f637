"""Peak memory of ``focalcodec encode`` on long inputs, model by input length.

For every model and length, one fresh process runs ``focalcodec encode IN -o OUT -m DIR``
(the command line's own entry point, :func:`focalcodec.cli.main`) on N minutes of real
speech (the clips of ``tests/data/audio`` tiled to length, 16 kHz mono WAV on disk), and
reports its peak resident memory (``VmHWM`` of ``/proc/self/status`` at exit: the
process's own peak since it started, which ``ru_maxrss`` is not, as it also counts the
parent's pages at fork) and wall time. A first process per model only loads the model,
to show how much of the peak is the model itself.

The models are full size with **random weights**: ``FocalCodec.from_config(name)``
saved with ``save_pretrained`` into a cache folder, which ``--model`` then names (memory
does not depend on the weights' values). Defaults: ``focalcodec_50hz_2k_causal``
(streaming session) and ``focalcodec_50hz`` (long-form windows), 1, 20 and 60 minutes.

Example (what docs/reliability.md reports)::

    OMP_NUM_THREADS=1 nice python benchmarks/bench_memory.py --minutes 1 20 60

Writes ``benchmarks/results/memory_encode.json`` (``--json`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / "tests" / "data" / "audio"
DEFAULT_MODELS = ["focalcodec_50hz_2k_causal", "focalcodec_50hz"]
RATE = 16000


_CHILD = """
import sys
from focalcodec.cli import main
status = main(sys.argv[1:])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_kB", int(line.split()[1]), file=sys.stderr)
sys.exit(status)
"""
_BUILD = """
import sys, torch
from focalcodec import FocalCodec
torch.manual_seed(0)
FocalCodec.from_config(sys.argv[1]).save_pretrained(sys.argv[2])
"""


def random_weight_model(name: str, cache: Path) -> Path:
    """A folder with the full-size architecture ``name`` and random weights (built in
    a child process, so that this one stays small); a model folder is used as it is."""
    if Path(name).is_dir():
        return Path(name)
    folder = cache / f"{name}_random"
    if not (folder / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-c", _BUILD, name, str(folder)], check=True)
    return folder


def write_speech(path: Path, minutes: float) -> None:
    """N minutes of real speech at 16 kHz, written block by block."""
    from focalcodec.files.audio import load_audio

    files = sorted(CLIPS.rglob("*.flac")) + sorted(CLIPS.rglob("*.wav"))
    clips = [load_audio(f, RATE).sig for f in files]
    want = round(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
        done = 0
        while done < want:
            for clip in clips:
                piece = clip[: want - done]
                out.write(np.clip(piece, -1, 1))
                done += len(piece)
                if done >= want:
                    break


def run_cli(args: list[str], extra_env: dict[str, str]) -> dict:
    """Run ``focalcodec ARGS`` in a fresh process: peak RSS (MB), wall time, status."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.update(extra_env)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    peak = [int(x.split()[1]) for x in lines if x.startswith("VmHWM_kB")]
    return {
        "peak_rss_mb": round(peak[0] / 1024, 1) if peak else None,
        "wall_seconds": round(wall, 1),
        "exit_status": proc.returncode,
        "stderr_tail": [x for x in lines if not x.startswith("VmHWM_kB")][-3:],
    }


def baseline(model: Path, tmp: Path, env: dict[str, str]) -> dict:
    """The model loaded and one second encoded: the floor under every long run."""
    return measure(model, 1 / 60, tmp, env)


def measure(model: Path, minutes: float, tmp: Path, env: dict[str, str]) -> dict:
    audio = tmp / f"speech_{minutes:g}min.wav"
    if not audio.exists():
        write_speech(audio, minutes)
    out = tmp / f"{model.name}_{minutes:g}min.fcz"
    argv = ["encode", str(audio), "-o", str(out)]
    argv += ["-m", str(model), "--device", "cpu", "--force", "-q"]
    row = {"model": model.name, "minutes": round(minutes, 4), **run_cli(argv, env)}
    if env:
        row["env"] = env
    if out.exists():
        from focalcodec.fcz import bitstream

        container = bitstream.loads(out.read_bytes())
        row["fcz_bytes"] = out.stat().st_size
        row["num_tokens"] = int(len(container.toks))
        row["audio_seconds"] = container.num_samples / RATE
        out.unlink()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=DEFAULT_MODELS,
        help="packaged names (built full size with random weights) or model folders",
    )
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 20, 60])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "focalcodec_bench_models",
        help="where the random-weight models are saved (reused between runs)",
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks/results/memory_encode.json"
    )
    parser.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the measured processes (e.g. "
        "MALLOC_MMAP_THRESHOLD_=131072 to see how much of the growth is the allocator)",
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = random_weight_model(name, args.cache)
            base = baseline(model, Path(tmp), env)
            print(json.dumps(base), flush=True)
            rows.append(base)
            for minutes in args.minutes:
                row = measure(model, minutes, Path(tmp), env)
                print(json.dumps(row), flush=True)
                rows.append(row)
                _save(args, rows)
    _save(args, rows)


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _save(args: argparse.Namespace, rows: list[dict]) -> None:
    record = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} nice "
        "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": os.environ.get("OMP_NUM_THREADS", "1"),
        },
        "note": "full-size architectures with random weights; the first row of each "
        "model (1 s of audio) is the floor: the model loaded plus one call",
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
