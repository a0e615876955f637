"""The Lhotse Shar field writer: lhotse reads it back, placeholders for missing cuts,
unchanged files kept, and only files this package wrote are ever replaced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focalcodec.errors import ModelMismatchError, OutputExistsError
from focalcodec.tokens import shar
from focalcodec.tokens.shar import check_field, marker_path, write_field

lhotse = pytest.importorskip("lhotse")

META = {"model_name": "m", "config_hash": "abc", "token_rate": 12.5}
TOKENS = {"a": np.array([1, 2, 3]), "b": np.array([4]), "c": np.array([5, 6])}


def cut_shards(folder, groups: list[list[str]]) -> list[str]:
    paths = []
    for k, ids in enumerate(groups):
        cuts = [lhotse.MonoCut(i, start=0, duration=0.16, channel=0) for i in ids]
        path = folder / f"cuts.{k:06d}.jsonl.gz"
        lhotse.CutSet.from_cuts(cuts).to_file(path)
        paths.append(str(path))
    return paths


def test_lhotse_reads_the_field_with_placeholders(tmp_path):
    groups = [["a", "b"], ["c", "lost"]]
    cuts = cut_shards(tmp_path, groups)
    out = tmp_path / "codes"
    out.mkdir()
    report = write_field(out, "codes", list(enumerate(groups)), TOKENS.get, META)
    assert report.written == ["codes.000000.tar", "codes.000001.tar"]
    assert report.missing == 1
    fields = {"cuts": cuts, "codes": [str(out / n) for n in report.written]}
    read = list(lhotse.CutSet.from_shar(fields=fields))
    assert [c.id for c in read] == ["a", "b", "c", "lost"]
    for cut in read[:3]:
        np.testing.assert_array_equal(cut.codes.load(), TOKENS[cut.id])
        assert cut.codes.load().dtype == np.int32
        assert cut.codes.frame_shift == 0.08
    assert not read[3].has_custom("codes")
    marker = json.loads(marker_path(out, "codes").read_text())
    assert marker["files"]["codes.000001.tar"]["missing"] == 1


def test_unchanged_files_are_kept_and_filled_ones_rewritten(tmp_path):
    groups = [["a", "b"], ["c", "late"]]
    plan = list(enumerate(groups))
    write_field(tmp_path, "codes", plan, TOKENS.get, META)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.tar")}
    more = {**TOKENS, "late": np.array([7])}
    report = write_field(tmp_path, "codes", plan, more.get, META)
    assert report.written == ["codes.000001.tar"] and report.kept == 1
    assert (tmp_path / "codes.000000.tar").stat().st_mtime_ns == stamps[
        "codes.000000.tar"
    ]


def test_foreign_files_are_refused_and_force_removes_only_ours(tmp_path):
    write_field(tmp_path, "codes", [(0, ["a"])], TOKENS.get, META)
    (tmp_path / "notes.txt").write_text("mine")
    check_field(tmp_path, "codes", META, force=False)  # the same model: fine
    with pytest.raises(ModelMismatchError, match="--force"):
        check_field(tmp_path, "codes", {**META, "config_hash": "other"}, force=False)
    (tmp_path / "codes.000007.tar").write_bytes(b"theirs")
    for force in (False, True):
        with pytest.raises(OutputExistsError, match="did not write"):
            check_field(tmp_path, "codes", META, force=force)
    (tmp_path / "codes.000007.tar").unlink()
    check_field(tmp_path, "codes", {**META, "config_hash": "other"}, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_files_are_listed_before_they_are_written(tmp_path, monkeypatch):
    """A crash between two files leaves both named in the marker, so the first one,
    already written, is still known to be ours."""
    write_tar = shar._write_tar
    calls = []

    def crash_on_second(folder, name, *args):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write_tar(folder, name, *args)

    monkeypatch.setattr(shar, "_write_tar", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_field(tmp_path, "codes", [(0, ["a"]), (1, ["b"])], TOKENS.get, META)
    listed = json.loads(marker_path(tmp_path, "codes").read_text())["files"]
    assert sorted(listed) == ["codes.000000.tar", "codes.000001.tar"]
    check_field(tmp_path, "codes", META, force=True)
    assert not any(tmp_path.iterdir())
