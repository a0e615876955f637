"""kill -9 and Ctrl-C in the middle of a batch encode leave no partial output.

A real ``focalcodec encode DIR -o OUT`` process is stopped as soon as its first output
appears. Every file left under an output name must be complete (it equals the output of
an uninterrupted run, byte for byte), and ``--skip-existing`` must finish the job. Ctrl-C
(SIGINT) and SIGTERM also remove the temporary file of the output in progress; kill -9
cannot be caught, so it may leave one hidden ``.NAME.*.part`` file, never more.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from focalcodec.cli import main
from support import speech_file

FILES = 16
MODEL = "causal_wavenext_50hz"


@pytest.fixture(scope="module")
def batch(tmp_path_factory, golden_dir: Path) -> tuple[Path, Path, str]:
    """An input folder of 16 files and the outputs of an uninterrupted run.

    The first file is short, so the first output appears soon; the other 15 are 30 s
    each, so that seconds of work remain when it does, even on a loaded machine where
    the test may wait a while before it runs again.
    """
    root = tmp_path_factory.mktemp("batch")
    src = root / "in"
    src.mkdir()
    speech_file(src / "f00.wav", 6.0)
    rest = speech_file(root / "long.wav", 30.0)
    for i in range(1, FILES):
        shutil.copy(rest, src / f"f{i:02d}.wav")
    model = str(golden_dir / MODEL)
    ref = root / "ref"
    assert main(["encode", str(src), "-o", str(ref), "-m", model, "-q"]) == 0
    return src, ref, model


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.fcz")}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_stop(src: Path, out: Path, model: str, sig: int) -> tuple[int, str]:
    argv = [sys.executable, "-m", "focalcodec", "encode", str(src), "-o", str(out)]
    proc = subprocess.Popen(
        [*argv, "-m", model],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        # Ctrl-C as a terminal delivers it: a test run started in the background by a
        # shell inherits SIGINT ignored, and so would the command under test.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(out.glob("*.fcz"))):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.01)
    assert proc.poll() is None, "the batch ended before it could be interrupted"
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    return code, proc.stderr.read()


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGKILL,
        signal.SIGINT,
        # The same unwinding as Ctrl-C (cli.app turns SIGTERM into it).
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
    ],
)
def test_interrupted_batch_leaves_only_whole_outputs(batch, tmp_path, sig):
    src, ref, model = batch
    out = tmp_path / "out"
    code, err = start_and_stop(src, out, model, sig)
    done = outputs(out)
    expected = outputs(ref)
    assert 0 < len(done) < FILES
    for name, data in done.items():
        assert data == expected[name], f"{name} is not the complete output"
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        # At most the temporary file of the one output in progress.
        assert all(n.endswith(".part") for n in hidden(out)) and len(hidden(out)) <= 1
    else:
        assert code == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert hidden(out) == []

    # Finishing the job keeps what was done and makes the rest.
    args = ["encode", str(src), "-o", str(out), "-m", model, "-q", "--skip-existing"]
    assert main(args) == 0
    assert outputs(out) == expected
