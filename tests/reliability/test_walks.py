"""Folder walks stay inside the real input folder, and say what they leave out.

``encode DIR`` followed a symlink to an ancestor and encoded files outside the input
tree (a link to ``/`` walked the disk); an unreadable subfolder was skipped silently,
exit 0. Now links that lead out or up, broken links and unreadable folders are each one
error line (exit 1), and nothing outside the tree is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.cli import main
from focalcodec.errors import DataError
from focalcodec.files.manifest import find_files, scan

MODEL = "causal_wavenext_50hz"


def wav(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(path, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.wav, in/sub/b.wav, in/sub/inner -> in/sub2 (inside: followed), outside
    files next to in/, and links that lead out or up."""
    root = tmp_path / "in"
    wav(root / "a.wav")
    wav(root / "sub" / "b.wav")
    wav(root / "sub2" / "c.wav")
    wav(tmp_path / "secret" / "outside.wav")
    wav(tmp_path / "lonely.wav")
    (root / "sub" / "inner").symlink_to(root / "sub2")
    (root / "up").symlink_to(tmp_path)  # the folder above the input
    (root / "sub" / "loop").symlink_to(root)  # back to the input itself
    (root / "out_dir").symlink_to(tmp_path / "secret")
    (root / "disk").symlink_to("/")
    (root / "file_out.wav").symlink_to(tmp_path / "lonely.wav")
    (root / "gone.wav").symlink_to(tmp_path / "nothing.wav")
    return root


def test_links_out_or_up_are_reported_and_not_followed(tree):
    problems: list[tuple[str, str]] = []
    found = find_files(tree, problems=problems)
    names = sorted(p.name for p in found)
    # Every real file of the tree once (c.wav through in/sub2 or in/sub/inner).
    assert names == ["a.wav", "b.wav", "c.wav"]
    assert all(tree.resolve() in p.resolve().parents for p in found)
    reported = {Path(path).name: why for path, why in problems}
    assert set(reported) == {
        "up",
        "loop",
        "out_dir",
        "disk",
        "file_out.wav",
        "gone.wav",
    }
    assert "outside the input folder" in reported["disk"]
    assert "outside the input folder" in reported["file_out.wav"]
    assert "broken symlink" in reported["gone.wav"]
    assert "symlink up to" in reported["loop"] or "outside" in reported["loop"]


def test_without_a_problem_list_the_first_problem_raises(tree):
    with pytest.raises(DataError, match="not followed|broken symlink"):
        find_files(tree)
    with pytest.raises(DataError):
        scan(tree)


def test_a_link_inside_the_tree_is_followed(tmp_path):
    root = tmp_path / "in"
    wav(root / "real" / "x.wav")
    (root / "alias").symlink_to(root / "real")
    assert [p.name for p in find_files(root)] == ["x.wav"]


def test_encode_dir_reads_nothing_outside_and_fails_loudly(
    tree, tmp_path, golden_dir, capsys
):
    out = tmp_path / "out"
    code = main(
        ["encode", str(tree), "-o", str(out), "-m", str(golden_dir / MODEL), "-q"]
    )
    assert code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    # One line per link left out, and a count; the three real files are encoded.
    assert sum("not followed" in line for line in lines) == 5
    assert sum("broken symlink" in line for line in lines) == 1
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.fcz"))
    assert len(made) == 3 and not any("outside" in m or "lonely" in m for m in made)


def test_an_unreadable_folder_is_an_error_line_and_exit_1(
    tmp_path, golden_dir, capsys, monkeypatch
):
    root = tmp_path / "in"
    wav(root / "a.wav")
    wav(root / "locked" / "b.wav")
    locked = str(root / "locked")
    real_scandir = os.scandir

    def scandir(path="."):
        # As if the folder were mode 000 (the tests run as root, who reads anything).
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    problems: list[tuple[str, str]] = []
    assert [p.name for p in find_files(root, problems=problems)] == ["a.wav"]
    assert problems == [(locked, "cannot read the folder (Permission denied)")]
    out = tmp_path / "out"
    code = main(
        ["encode", str(root), "-o", str(out), "-m", str(golden_dir / MODEL), "-q"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"{locked}: cannot read the folder (Permission denied)" in err
    assert (out / "a.fcz").is_file()
