"""What the container costs: tokenizing the same speech from files, Parquet, WebDataset
and Lhotse Shar.

The speech of ``../shared/audio`` (every ``--every``-th file of its manifest) is
converted, in a temporary folder, into

* ``files``: a JSONL manifest of the FLAC files themselves;
* ``parquet``: a ``datasets`` Parquet dataset (``Audio`` column with the FLAC bytes,
  ``Dataset.from_dict(...).cast_column("audio", Audio())``, two shards);
* ``wds``: two WebDataset tar shards (``KEY.flac`` + ``KEY.json``, ``webdataset.TarWriter``);
* ``shar``: a Lhotse Shar folder (``CutSet.to_shar``, FLAC, two shards);

and each row runs ``focalcodec tokenize``'s engine on one of them in a fresh process,
in ``--rounds`` rounds (every other one in reverse order, to bracket drift)
(:func:`focalcodec.pipeline.tokenize.tokenize_entries` for files,
:func:`focalcodec.pipeline.sources.tokenize_source` for the others): the defaults of a
CPU (item by item, one DataLoader worker), ``--threads`` torch threads. Time runs from
"model loaded" to "index written" (listing the source, reading, decoding, encoding and
writing included). Every row's tokens are compared with the ``files`` row's.

The model is a full-size config with random weights (``--model focalcodec_50hz``), or
any model folder (``--model tests/data/golden/noncausal_vocos_50hz``: the tiny golden
model, where reading and decoding weigh more). The JSON names the CPU (model, AVX2,
AVX-512, VNNI flags) and the kernel backend (``focalcodec.modules.kernels.describe()``
from the row's process, after its run).

Example (the table in ``docs/tokenize.md``)::

    python benchmarks/bench_sources.py ../shared/audio --every 16 --threads 2 \\
        --out benchmarks/results/bench_sources_cpu.json
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
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = Path(tempfile.gettempdir()) / "focalcodec_bench_models"
ROWS = ["files", "parquet", "wds", "shar"]
SHARDS = 2


# -- the sources -------------------------------------------------------------------------


def _subset(source: Path, every: int) -> list[dict]:
    manifest = source / "manifest.jsonl" if source.is_dir() else source
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line]
    rows = rows[::every]
    for row in rows:
        row["file"] = str((manifest.parent / row["path"]).resolve())
        row["id"] = Path(row["path"]).stem
    return rows


def _parquet(rows: list[dict], folder: Path) -> None:
    import datasets

    data = {
        "audio": [
            {"bytes": Path(r["file"]).read_bytes(), "path": r["path"]} for r in rows
        ],
        "id": [r["id"] for r in rows],
        "speaker": [r.get("speaker") for r in rows],
        "language": [r.get("language") for r in rows],
    }
    ds = datasets.Dataset.from_dict(data).cast_column("audio", datasets.Audio())
    (folder / "data").mkdir(parents=True)
    per = -(-len(rows) // SHARDS)
    for k in range(SHARDS):
        part = ds.select(range(k * per, min(len(rows), (k + 1) * per)))
        part.to_parquet(folder / "data" / f"train-{k:05d}-of-{SHARDS:05d}.parquet")


def _wds(rows: list[dict], folder: Path) -> None:
    import webdataset as wds

    folder.mkdir(parents=True)
    per = -(-len(rows) // SHARDS)
    for k in range(SHARDS):
        with wds.TarWriter(str(folder / f"shard-{k:06d}.tar")) as writer:
            for r in rows[k * per : (k + 1) * per]:
                meta = {"speaker": r.get("speaker"), "language": r.get("language")}
                writer.write({
                    "__key__": r["id"],
                    "flac": Path(r["file"]).read_bytes(),
                    "json": meta,
                })  # fmt: skip


def _shar(rows: list[dict], folder: Path) -> None:
    import lhotse

    recs = [lhotse.Recording.from_file(r["file"], recording_id=r["id"]) for r in rows]
    cuts = lhotse.CutSet.from_cuts(r.to_cut() for r in recs)  # cut id = recording id
    folder.mkdir(parents=True)
    cuts.to_shar(
        folder, fields={"recording": "flac"}, shard_size=-(-len(rows) // SHARDS)
    )


def prepare(args: argparse.Namespace, work: Path) -> tuple[dict[str, str], list[dict]]:
    """Every source of the rows, and the subset they hold."""
    rows = _subset(Path(args.source), args.every)
    manifest = work / "files.jsonl"
    lines = [json.dumps({"id": r["id"], "path": r["file"]}) for r in rows]
    manifest.write_text("\n".join(lines) + "\n")
    sources = {"files": str(manifest)}
    builders = {"parquet": _parquet, "wds": _wds, "shar": _shar}
    for name in args.rows:
        if name in builders:
            start = time.perf_counter()
            builders[name](rows, work / name)
            print(
                f"{name}: built in {time.perf_counter() - start:.1f} s", file=sys.stderr
            )
            sources[name] = str(work / name)
    return sources, rows


def model_dir(name: str) -> str:
    """A model folder: ``name`` itself, or a full-size config with random weights."""
    if Path(name).is_dir():
        return str(Path(name).resolve())
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from focalcodec import FocalCodec

    folder = MODELS / f"{name}_random"
    if not (folder / "model.safetensors").exists():
        torch.manual_seed(0)
        FocalCodec.from_config(name).save_pretrained(folder)
    return str(folder)


# -- a row (in its own process) ------------------------------------------------------------


def _kernels() -> dict:
    try:
        from focalcodec.modules.kernels import describe
    except ImportError:
        import torch

        return {
            "mkldnn": torch.backends.mkldnn.is_available(),
            "mkl": torch.backends.mkl.is_available(),
        }
    return describe()


def run_row(job: dict) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from focalcodec import FocalCodec
    from focalcodec.files.manifest import scan
    from focalcodec.pipeline.sources import open_source, tokenize_source
    from focalcodec.pipeline.tokenize import TokenizeOptions, tokenize_entries
    from focalcodec.runtime import setup

    torch.set_num_threads(job["threads"])
    dist = setup("cpu")
    codec = FocalCodec.from_pretrained(job["model"]).eval()
    options = TokenizeOptions(workers=job["workers"], force=True)
    # Resolve the kernel backend (a first calibration, if any) before the clock runs.
    kernels = _kernels()
    start = time.perf_counter()
    if job["row"] == "files":
        report = tokenize_entries(scan(job["source"]), job["out"], codec, options, dist)
    else:
        source = open_source(job["source"])
        report = tokenize_source(source, job["out"], codec, options, dist)
    wall = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"{len(report.failed)} items failed: {report.failed[0]}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "wall": round(wall, 3),
        "audio_seconds": round(report.seconds, 3),
        "items": report.items,
        "peak_rss_mb": round(max(own, workers) / 1024, 1),
        "kernels": kernels,
    }


def _identical(base: Path, folder: Path) -> bool:
    from focalcodec.tokens.dataset import TokenDataset

    ref = {item["id"]: item["tokens"] for item in TokenDataset(base)}
    got = {item["id"]: item["tokens"] for item in TokenDataset(folder)}
    same = set(got) == set(ref)
    return same and all(
        got[i].shape == ref[i].shape and (got[i] == ref[i]).all() for i in ref
    )


# -- driver ------------------------------------------------------------------------------


def _cpu() -> dict:
    sys.path.insert(0, str(REPO / "src"))
    try:
        from focalcodec.modules.calibration import cpu_info
    except ImportError:
        import platform

        return {"model": platform.processor()}
    return cpu_info()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="folder with manifest.jsonl")
    parser.add_argument("--model", default="focalcodec_50hz")
    parser.add_argument("--every", type=int, default=16, help="every k-th file")
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds, every other in reverse row order"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_row(json.loads(args.job))))
        return
    import torch

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources, rows = prepare(args, work)
        model = model_dir(args.model)
        order = []
        for k in range(args.rounds):
            order += [
                (k + 1, r) for r in (args.rows if k % 2 == 0 else args.rows[::-1])
            ]
        for round_, row in order:
            job = {
                "row": row,
                "source": sources[row],
                "model": model,
                "threads": args.threads,
                "workers": args.workers,
                "out": str(work / f"out-{row}"),
            }
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            cmd = [sys.executable, __file__, "--job", json.dumps(job)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                print(f"{row}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            result = {
                "row": row,
                "round": round_,
                **json.loads(done.stdout.splitlines()[-1]),
            }
            result["audio_per_second"] = round(
                result["audio_seconds"] / result["wall"], 2
            )
            if row != "files" and "files" in sources and (work / "out-files").exists():
                result["tokens_identical_to_files"] = _identical(
                    work / "out-files", work / f"out-{row}"
                )
            results.append(result)
            print(
                json.dumps({k: v for k, v in result.items() if k != "kernels"}),
                flush=True,
            )
    report = {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "torch": torch.__version__,
        "model": args.model,
        "model_weights": "as stored" if Path(args.model).is_dir() else "random",
        "files": len(rows),
        "every": args.every,
        "threads": args.threads,
        "workers": args.workers,
        "shards": SHARDS,
        "rounds": args.rounds,
        "rows": results,
    }
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
