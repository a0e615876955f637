"""Fixtures of the command-line tests: a golden model, real speech, an input tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import AUDIO, CLIPS, NOISY

MODEL = "causal_wavenext_50hz"  # 16 kHz in, 24 kHz out: exercises both rates


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return AUDIO


@pytest.fixture(scope="session")
def model(golden_dir: Path) -> str:
    """The golden model folder that the CLI tests encode and decode with."""
    return str(golden_dir / MODEL)


@pytest.fixture(scope="session")
def clips() -> list[Path]:
    """Two clean speech files: 2.09 s of English and 1.33 s of Italian, 16 kHz."""
    return [AUDIO / c for c in CLIPS]


@pytest.fixture
def tree(tmp_path: Path, clips: list[Path]) -> Path:
    """in/a/one.flac, in/b/c/two.flac, in/noisy48k.flac and a non-audio file."""
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "b" / "c").mkdir(parents=True)
    shutil.copy(clips[0], root / "a" / "one.flac")
    shutil.copy(clips[1], root / "b" / "c" / "two.flac")
    shutil.copy(AUDIO / NOISY, root / "noisy48k.flac")
    (root / "notes.txt").write_text("not audio")
    return root
