"""Tokenization throughput: seconds of audio tokenized per second of wall time.

Rows (each in fresh processes, so that peak memory belongs to the row alone):

* ``reference-loop``: a plain per-file loop over the reference implementation (decode
  with soundfile, resample with soxr, ``sig_to_toks`` one file at a time); only with
  ``--reference DIR`` (a checkout of lucadellalib/focalcodec), put on ``sys.path`` here.
* ``reference-padded``: the reference's own padded batches (``length=``) of
  ``--ref-batch`` files in manifest order (not batch-invariant); with ``--reference``.
* ``exact``: this package, item by item (``focalcodec tokenize --exact``).
* ``batched``: this package, length-sorted padded buckets of ``--batch-seconds``.
* ``batched-2proc``: the same, 2 processes as under ``torchrun`` (gloo), each with
  half the threads.
* ``exact-bf16``, ``batched-bf16`` (opt-in rows, not in the default list): the same under
  bf16 autocast (``--precision bf16``), for CPUs with native bf16 (AVX512-BF16, AMX).
* ``cuda-*`` (with a GPU): ``exact``, ``batched`` fp32 and bf16 with ``--gpu-batch-seconds``
  and ``reference-padded`` at the batch size of the bf16 row's average bucket.

Each of our rows runs the tokenizer engine of ``focalcodec tokenize``
(:func:`focalcodec.pipeline.tokenize.tokenize_entries`: DataLoader decoding, writing the token
folder and merging it included). Timing starts once every process has its model (random
weights of a full-size config, ``FocalCodec.from_config``) and ends when the index is
written. Peak RSS is per process (the largest), DataLoader workers included.

When the ``exact`` row is among the rows, every other row of ours also reports
``agreement``: the share of its tokens equal to the ``exact`` row's (item by item fp32,
each item's solo tokens), so that a faster row states what it costs. With ``exact-bf16``,
the other bf16 rows also report ``agreement_solo``: their tokens against bf16 solo tokens
(what padding alone changes).

Example (the table in ``docs/tokenize.md``)::

    python benchmarks/bench_tokenize.py ../shared/audio --every 8 --threads 2 \\
        --reference /work/ref --out benchmarks/results/bench_tokenize_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = Path(tempfile.gettempdir()) / "focalcodec_bench_models"
CPU_ROWS = [
    "reference-loop",
    "reference-padded",
    "exact",
    "exact-2proc",
    "batched",
    "batched-2proc",
]
GPU_ROWS = ["cuda-exact", "cuda-batched", "cuda-batched-bf16", "cuda-reference-padded"]


# -- row workers (run in their own processes) --------------------------------------------


def _peak_rss_mb() -> float:
    self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(self, children) / 1024, 1)


def _load_list(job: dict) -> list[dict]:
    return [json.loads(x) for x in Path(job["manifest"]).read_text().splitlines()]


def reference_row(job: dict) -> dict:
    """The reference package: a per-file loop, or its padded batches."""
    import numpy as np
    import soundfile as sf
    import soxr
    import torch

    torch.set_num_threads(job["threads"])
    sys.path.insert(0, str(Path(job["reference"]).resolve()))
    from focalcodec import FocalCodec

    root = Path(job["reference"]).resolve()
    if not Path(sys.modules["focalcodec"].__file__).is_relative_to(root):
        raise SystemExit(f"could not import the reference from {root}")
    torch.manual_seed(0)
    device = job["device"]
    codec = FocalCodec.from_config(job["config_json"]).eval().to(device)
    items = _load_list(job)

    def load(path: str) -> torch.Tensor:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        sig = data.mean(axis=1)
        if rate != 16000:
            sig = soxr.resample(sig, rate, 16000, "HQ").astype(np.float32)
        return torch.from_numpy(sig)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    seconds = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        size = 1 if job["row"].endswith("loop") else job["ref_batch"]
        for k in range(0, len(items), size):
            sigs = [load(item["path"]) for item in items[k : k + size]]
            longest = max(len(s) for s in sigs)
            batch = torch.stack(
                [torch.nn.functional.pad(s, (0, longest - len(s))) for s in sigs]
            )
            if size == 1:
                toks = codec.sig_to_toks(batch.to(device))
            else:
                length = torch.tensor([len(s) / longest for s in sigs])
                toks = codec.sig_to_toks(batch.to(device), length=length.to(device))
            toks.cpu()
            seconds += sum(len(s) for s in sigs) / 16000
    sync()
    return {"wall": time.perf_counter() - start, "audio_seconds": seconds}


def ours_rank(job: dict) -> dict:
    """One process of our rows (a rank when ``nproc`` > 1, set up like torchrun)."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from focalcodec import FocalCodec
    from focalcodec.files.manifest import scan
    from focalcodec.pipeline.tokenize import TokenizeOptions, tokenize_entries
    from focalcodec.runtime import barrier, cleanup, setup

    torch.set_num_threads(job["threads"])
    dist = setup(job["device"])
    codec = FocalCodec.from_pretrained(job["model_dir"]).eval().to(dist.device)
    options = TokenizeOptions(
        exact=job["exact"],
        batch_seconds=job["batch_seconds"],
        precision=job["precision"],
        workers=job["workers"],
        force=True,
    )
    entries = scan(job["manifest"])
    barrier()
    start = time.perf_counter()
    report = tokenize_entries(entries, job["out"], codec, options, dist)
    barrier()
    if dist.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    cleanup()
    if report.failed:
        raise SystemExit(f"{len(report.failed)} items failed: {report.failed[0]}")
    return {"wall": wall, "audio_seconds": report.seconds, "rank": dist.rank}


def ours_row(job: dict) -> dict:
    """Start ``nproc`` rank processes and combine what they report."""
    nproc = job["nproc"]
    if nproc == 1:
        return ours_rank(job)
    env = dict(os.environ, WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        env["MASTER_PORT"] = str(s.getsockname()[1])
    procs = []
    for rank in range(nproc):
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
        cmd = [sys.executable, __file__, "--job", json.dumps({**job, "part": "rank"})]
        procs.append(
            subprocess.Popen(cmd, env=rank_env, stdout=subprocess.PIPE, text=True)
        )
    results = [json.loads(p.communicate()[0].splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a rank failed")
    return {
        "wall": max(r["wall"] for r in results),
        "audio_seconds": sum(r["audio_seconds"] for r in results),
        "peak_rss_mb_per_process": max(r["peak_rss_mb"] for r in results),
    }


def run_job(job: dict) -> None:
    if job.get("part") == "rank":
        result = ours_rank(job)
    elif "reference" in job["row"]:
        result = reference_row(job)
    else:
        result = ours_row(job)
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    print(json.dumps(result))


# -- driver ------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path]:
    """The subset manifest, the random full-size model folder and its config.json."""
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from focalcodec import FocalCodec
    from focalcodec.files.manifest import scan

    source = Path(args.source)
    if source.is_dir() and (source / "manifest.jsonl").is_file():
        source = source / "manifest.jsonl"
    entries = scan(source)[:: args.every]
    manifest = work / "subset.jsonl"
    lines = [json.dumps({"id": e.id, "path": str(e.path), **e.meta}) for e in entries]
    manifest.write_text("\n".join(lines) + "\n")
    model_dir = MODELS / f"{args.model}_random"
    if not (model_dir / "model.safetensors").exists():
        torch.manual_seed(0)
        FocalCodec.from_config(args.model).save_pretrained(model_dir)
    return manifest, model_dir, model_dir / "config.json"


def row_job(args, row: str, manifest: Path, model_dir: Path, config: Path, work: Path):
    cuda = row.startswith("cuda")
    name = row.removeprefix("cuda-")
    return {
        "row": row,
        "manifest": str(manifest),
        "model_dir": str(model_dir),
        "config_json": str(config),
        "reference": args.reference,
        "device": "cuda" if cuda else "cpu",
        "threads": max(1, args.threads // (2 if name.endswith("2proc") else 1)),
        "nproc": 2 if name.endswith("2proc") else 1,
        "exact": name.startswith("exact"),
        "precision": "bf16" if "bf16" in name.split("-") else "fp32",
        "batch_seconds": args.gpu_batch_seconds if cuda else args.batch_seconds,
        "workers": args.workers,
        "ref_batch": args.gpu_ref_batch if cuda else args.ref_batch,
        "out": str(work / f"out-{row}"),
    }


def _add_agreement(result: dict, work: Path) -> None:
    """Add ``agreement`` (and for bf16 rows ``agreement_solo``) to a row of ours."""
    row = result["row"]
    if "reference" in row:
        return
    bases = [("agreement", "exact")]
    if "bf16" in row.split("-"):
        bases.append(("agreement_solo", "exact-bf16"))
    for key, base in bases:
        value = _agreement(work / f"out-{base}", work / f"out-{row}")
        if value is not None:
            result[key] = value


def _agreement(baseline: Path, folder: Path) -> float | None:
    """Share of the tokens in ``folder`` equal to those of ``baseline`` (same ids)."""
    sys.path.insert(0, str(REPO / "src"))
    from focalcodec.tokens.dataset import TokenDataset
    from focalcodec.tokens.files import INDEX

    if not (baseline / INDEX).exists() or baseline == folder:
        return None
    base = {item["id"]: item["tokens"] for item in TokenDataset(baseline)}
    same = total = 0
    for item in TokenDataset(folder):
        ref = base[item["id"]]
        if ref.shape != item["tokens"].shape:
            raise SystemExit(f"{folder.name}: {item['id']} has a different token count")
        same += int((ref == item["tokens"]).sum())
        total += ref.size
    return round(same / total, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="audio folder or manifest")
    parser.add_argument("--model", default="focalcodec_50hz")
    parser.add_argument("--every", type=int, default=8, help="every k-th file")
    parser.add_argument("--rows", nargs="+", default=None)
    parser.add_argument("--reference", default=None, help="reference checkout")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--ref-batch", type=int, default=8)
    parser.add_argument("--gpu-batch-seconds", type=float, default=600.0)
    parser.add_argument("--gpu-ref-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        return run_job(json.loads(args.job))
    import torch

    rows = args.rows or CPU_ROWS + (GPU_ROWS if torch.cuda.is_available() else [])
    if not args.reference:
        rows = [r for r in rows if "reference" not in r]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest, model_dir, config = prepare(args, Path(tmp))
        files = len(manifest.read_text().splitlines())
        for row in rows:
            job = row_job(args, row, manifest, model_dir, config, Path(tmp))
            cmd = [sys.executable, __file__, "--job", json.dumps(job)]
            env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]))
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                print(f"{row}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            result = {"row": row, **json.loads(done.stdout.splitlines()[-1])}
            result["audio_per_second"] = round(
                result["audio_seconds"] / result["wall"], 2
            )
            results.append(result)
            print(json.dumps(result), flush=True)
        # Agreement once every row has run, so that the rows can run in any order.
        for result in results:
            _add_agreement(result, Path(tmp))
    report = {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "model": args.model,
        "files": files,
        "audio_seconds": results[0]["audio_seconds"] if results else None,
        "every": args.every,
        "threads": args.threads,
        "batch_seconds": args.batch_seconds,
        "rows": results,
    }
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
