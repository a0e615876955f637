"""``torchrun ... focalcodec tokenize``: several CPU processes (gloo) equal one, and a
rank killed with -9 resumes without duplicates or lost items."""

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
from focalcodec.io.tokens import TokenDataset

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
    done = subprocess.run(
        torchrun(manifest, "-o", two, "-m", model, "--workers", "0"),
        env=environment(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
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


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find ranks")
def test_rank_killed_with_sigkill_resumes(tmp_path, data_dir, golden_dir):
    manifest = tmp_path / "many.jsonl"
    ids = write_repeated_manifest(manifest, data_dir, copies=6)
    model = golden_dir / MODEL
    out = tmp_path / "out"
    args = (manifest, "-o", out, "-m", model, "--exact", "--shard-size", "2",
            "--workers", "0")  # fmt: skip
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
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (out / "index.jsonl").exists()
    written = journal_lines(out)
    assert 0 < written < len(ids) // 2  # the run was cut short
    # One of the finished data files is damaged as well: the restart must redo it.
    part = sorted(out.glob("part-*.npy"))[0]
    part.write_bytes(part.read_bytes()[:-7])

    done = subprocess.run(
        torchrun(*args), env=environment(), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
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
