"""``torchrun ... focalcodec tokenize``: several CPU processes (gloo) equal one, and a
rank killed with -9 resumes without duplicates or lost items; for a manifest (items
split by id) and for WebDataset tar shards (split by shard)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import focalcodec
from focalcodec.cli import main
from focalcodec.tokens.dataset import TokenDataset

MODEL = "causal_wavenext_50hz"
SRC = str(Path(focalcodec.__file__).resolve().parents[1])


def torchrun(*args, nproc: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "focalcodec", "tokenize",
        *[str(a) for a in args],
    ]  # fmt: skip


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def run_ranks(*args) -> subprocess.CompletedProcess:
    """``focalcodec tokenize *args`` on two ranks, which must succeed."""
    done = subprocess.run(
        torchrun(*args), env=environment(), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same(a: Path, b: Path) -> None:
    left, right = TokenDataset(a, verify=True), TokenDataset(b, verify=True)
    assert left.ids == right.ids
    for x, y in zip(left, right, strict=True):
        np.testing.assert_array_equal(x["tokens"], y["tokens"])
        assert x == {**y, "tokens": x["tokens"]}


def test_two_processes_equal_one(tmp_path, data_dir, golden_dir):
    manifest = data_dir / "audio" / "manifest.jsonl"
    model = golden_dir / MODEL
    two = tmp_path / "two"
    done = run_ranks(manifest, "-o", two, "-m", model, "--workers", "0")
    assert "2 process(es); 15 items" in done.stderr
    one = tmp_path / "one"
    assert main([
        "tokenize", str(manifest), "-o", str(one), "-m", str(model), "-q",
    ]) == 0  # fmt: skip
    assert_same(two, one)
    # Item by item, bit-exact: the batched tokens agree on these clips.
    exact = tmp_path / "exact"
    assert main(["tokenize", str(manifest), "-o", str(exact), "-m", str(model),
                 "-q", "--exact"]) == 0  # fmt: skip
    assert_same(exact, one)


def write_repeated_manifest(path: Path, data_dir: Path, copies: int) -> list[str]:
    entries = [
        json.loads(line)
        for line in (data_dir / "audio" / "manifest.jsonl").read_text().splitlines()
    ]
    lines, ids = [], []
    for k in range(copies):
        for e in entries:
            ids.append(f"copy{k}/{e['path']}")
            full = str(data_dir / "audio" / e["path"])
            lines.append(json.dumps({**e, "id": ids[-1], "path": full}))
    path.write_text("\n".join(lines) + "\n")
    return ids


def worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def journal_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.glob("journal-*.jsonl"))


def kill_a_rank_midway(args: tuple, out: Path) -> None:
    """Start ``focalcodec tokenize *args`` on two ranks, SIGKILL rank 1 once four items
    are in the journals, and check that the run failed before writing an index."""
    proc = subprocess.Popen(
        torchrun(*args), env=environment(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while journal_lines(out) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    ranks = worker_pids(proc.pid)
    assert proc.poll() is None and len(ranks) == 2, "finished before the kill"
    os.kill(ranks[1], signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (out / "index.jsonl").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find ranks")
def test_rank_killed_with_sigkill_resumes(tmp_path, data_dir, golden_dir):
    manifest = tmp_path / "many.jsonl"
    ids = write_repeated_manifest(manifest, data_dir, copies=6)
    model = golden_dir / MODEL
    out = tmp_path / "out"
    args = (manifest, "-o", out, "-m", model, "--exact", "--shard-size", "2",
            "--workers", "0")  # fmt: skip
    kill_a_rank_midway(args, out)
    written = journal_lines(out)
    assert 0 < written < len(ids) // 2  # the run was cut short
    # One of the finished data files is damaged as well: the restart must redo it.
    part = sorted(out.glob("part-*.npy"))[0]
    part.write_bytes(part.read_bytes()[:-7])

    done = run_ranks(*args)
    assert "redone, damaged: " + part.name in done.stderr
    ds = TokenDataset(out, verify=True)
    assert ds.ids == ids  # every item once, in manifest order
    assert sorted(p.name for p in out.iterdir()) == [
        "index.jsonl", "meta.json", "offsets.npy", "tokens.npy",
    ]  # fmt: skip
    ref = tmp_path / "ref"
    one = ["tokenize", str(manifest), "-o", str(ref), "-m", str(model), "-q", "--exact"]
    assert main(one) == 0
    assert_same(out, ref)


def write_tar_shards(
    folder: Path, data_dir: Path, shards: int, copies: int
) -> list[str]:
    """``shards`` WebDataset tars holding ``copies`` of the 15 clips, keys in order."""
    wds = pytest.importorskip("webdataset")
    entries = [
        json.loads(line)
        for line in (data_dir / "audio" / "manifest.jsonl").read_text().splitlines()
    ]
    keys = [f"c{k}_{Path(e['path']).stem}" for k in range(copies) for e in entries]
    paths = [data_dir / "audio" / e["path"] for _ in range(copies) for e in entries]
    folder.mkdir()
    per_shard = -(-len(keys) // shards)
    for s in range(shards):
        with wds.TarWriter(str(folder / f"part-{s:04d}.tar")) as writer:
            for key, path in zip(
                keys[s * per_shard : (s + 1) * per_shard],
                paths[s * per_shard : (s + 1) * per_shard],
            ):
                writer.write({"__key__": key, "flac": path.read_bytes()})
    return keys


def test_two_processes_over_tar_shards_equal_one(tmp_path, data_dir, golden_dir):
    """Shard i goes to rank i % 2, whole; the index is in source order either way."""
    keys = write_tar_shards(tmp_path / "tars", data_dir, shards=3, copies=1)
    pattern = tmp_path / "tars" / "part-{0000..0002}.tar"
    model = golden_dir / MODEL
    two = tmp_path / "two"
    done = run_ranks(pattern, "-o", two, "-m", model, "--workers", "0", "--format",
                     "parquet")  # fmt: skip
    assert "2 process(es); 15 items" in done.stderr
    files = sorted(p.name for p in two.glob("part-r*.parquet"))
    assert [f[:11] for f in files] == ["part-r00000", "part-r00001"]
    shards = {i["shard"]: i["id"] for i in TokenDataset(two)}
    assert len(shards) == 3
    one = tmp_path / "one"
    assert main([
        "tokenize", str(pattern), "-o", str(one), "-m", str(model), "-q",
        "--format", "parquet",
    ]) == 0  # fmt: skip
    assert_same(two, one)
    assert TokenDataset(one).ids == keys


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find ranks")
def test_tar_source_rank_killed_with_sigkill_resumes(tmp_path, data_dir, golden_dir):
    keys = write_tar_shards(tmp_path / "tars", data_dir, shards=6, copies=6)
    source = tmp_path / "tars"
    model = golden_dir / MODEL
    out = tmp_path / "out"
    args = (source, "-o", out, "-m", model, "--exact", "--shard-size", "2",
            "--workers", "0")  # fmt: skip
    kill_a_rank_midway(args, out)
    assert 0 < journal_lines(out) < len(keys) // 4  # the run was cut short

    done = run_ranks(*args)
    assert "items already done" in done.stderr
    ds = TokenDataset(out, verify=True)
    assert ds.ids == keys  # every item once, in source order
    ref = tmp_path / "ref"
    one = ["tokenize", str(source), "-o", str(ref), "-m", str(model), "-q", "--exact"]
    assert main(one) == 0
    assert_same(out, ref)
