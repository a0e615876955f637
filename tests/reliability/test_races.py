"""Refusing to overwrite is atomic: of two writers racing for one name, exactly one wins.

Both writers pass the "does it exist?" check before either publishes (a barrier holds them
inside :func:`focalcodec.files.atomic.atomic_write` until both have written), so only the
publishing step can keep them apart. Then two real ``focalcodec resynth X -o same.wav``
processes are started together.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import soundfile as sf

from focalcodec.errors import OutputExistsError
from focalcodec.files import atomic


def race(path: Path, payloads: list[bytes], force: bool = False) -> list:
    """Write ``payloads`` to ``path`` from one thread each; their outcomes."""
    barrier = threading.Barrier(len(payloads))
    outcomes: list = [None] * len(payloads)

    def writer(i: int) -> None:
        try:
            with atomic.atomic_write(path, force=force) as fileobj:
                fileobj.write(payloads[i])
                barrier.wait(timeout=30)  # everyone has passed the existence check
            outcomes[i] = "won"
        except OutputExistsError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


@pytest.mark.parametrize("writers", [2, 5])
def test_exactly_one_racing_writer_wins(tmp_path, writers):
    for round_ in range(10):
        path = tmp_path / f"out{round_}.fcz"
        payloads = [f"writer {i} ".encode() * 100 for i in range(writers)]
        outcomes = race(path, payloads)
        winners = [i for i, o in enumerate(outcomes) if o == "won"]
        assert len(winners) == 1, outcomes
        assert path.read_bytes() == payloads[winners[0]]
        for o in outcomes:
            assert o == "won" or "created by another process" in str(o)
        # Losers leave nothing behind: only the winner's file is in the folder.
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_race_without_hard_links_still_has_one_winner(tmp_path, monkeypatch):
    """File systems without hard links: the name is reserved with O_EXCL instead."""

    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    for round_ in range(10):
        path = tmp_path / f"out{round_}.wav"
        outcomes = race(path, [b"a" * 50, b"b" * 50])
        assert sorted(map(str, outcomes)).count("won") == 1, outcomes
        assert path.read_bytes() in (b"a" * 50, b"b" * 50)


def test_forced_racing_writers_leave_one_whole_file(tmp_path):
    path = tmp_path / "out.bin"
    payloads = [bytes([i]) * 4096 for i in range(4)]
    assert race(path, payloads, force=True) == ["won"] * 4
    assert path.read_bytes() in payloads


def test_two_resynth_processes_started_together(golden_dir, data_dir, tmp_path):
    """The reported case: both exited 0 and one output silently replaced the other."""
    clip = data_dir / "audio" / "multilingual" / "it" / "agent-loggedoff.flac"
    out = tmp_path / "same.wav"
    model = golden_dir / "causal_wavenext_50hz"
    argv = [sys.executable, "-m", "focalcodec", "resynth", str(clip), "-o", str(out)]
    procs = [
        subprocess.Popen(
            [*argv, "-m", str(model), "-q"],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "same.wav" in loser and ("exists" in loser or "another process" in loser)
    assert sf.info(out).frames > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.wav"]
