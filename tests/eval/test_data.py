"""Finding utterances (directory, manifest) and planning voice conversions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from focalcodec.eval.base import EvalError
from focalcodec.eval.conversion import load_conversions, plan_conversions
from focalcodec.eval.data import Utterance, find_utterances


def _write(path, seconds=0.2):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds), dtype=np.float32), 16000)


def test_directory_is_searched_recursively_with_folder_speakers(tmp_path):
    for name in ("spk1/a.wav", "spk1/b.flac", "spk2/c.wav"):
        _write(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not audio")
    found = find_utterances(tmp_path)
    assert [u.key for u in found] == ["spk1/a.wav", "spk1/b.flac", "spk2/c.wav"]
    assert [u.speaker for u in found] == ["spk1", "spk1", "spk2"]
    assert find_utterances(tmp_path, limit=1)[0].key == "spk1/a.wav"


def test_shared_manifest_filters(shared_dir):
    manifest = shared_dir / "audio" / "manifest.jsonl"
    test = find_utterances(manifest, split="test")
    assert len(test) == 153  # the count documented in shared/audio/README.md
    assert all(u.path.is_file() and u.split == "test" for u in test)
    only = find_utterances(manifest, speakers=["84"])
    assert {u.speaker for u in only} == {"84"} and len(only) == 29


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"speaker": "x"}', '"path"'),
        ('{"path": "missing.wav"}', "not found"),
    ],
)
def test_bad_manifest_lines_name_the_line(tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line + "\n")
    with pytest.raises(EvalError, match=rf"m.jsonl:1: .*{message}"):
        find_utterances(manifest)


def test_missing_data_and_empty_selection_are_errors(tmp_path):
    with pytest.raises(EvalError, match="no such"):
        find_utterances(tmp_path / "absent")
    with pytest.raises(EvalError, match="no audio files"):
        find_utterances(tmp_path)


def _utts(spec: dict[str, int]) -> list[Utterance]:
    return [
        Utterance(f"{spk}/{i}.wav", f"/x/{spk}/{i}.wav", spk)
        for spk, n in spec.items()
        for i in range(n)
    ]


def test_plan_converts_every_source_to_another_speaker_with_held_out_refs():
    plan = plan_conversions(_utts({"a": 4, "b": 3, "c": 1}), num_refs=2)
    ref_keys = {r.key for conv in plan for r in conv.refs}
    for conv in plan:
        assert conv.target != conv.source.speaker
        assert conv.source.key not in ref_keys
        assert {r.speaker for r in conv.refs} == {conv.target}
        assert len(conv.refs) == 2
    # a: 2 sources, b: 1 source, c: 1 source (too few files to be a target).
    assert len(plan) == 4
    assert {c.target for c in plan} == {"a", "b"}


def test_plan_needs_two_target_speakers():
    with pytest.raises(EvalError, match="two speakers"):
        plan_conversions(_utts({"a": 5, "b": 1}), num_refs=2)


def test_explicit_plan_file(tmp_path):
    for name in ("src.wav", "r1.wav", "r2.wav"):
        _write(tmp_path / name)
    plan_file = tmp_path / "plan.jsonl"
    plan_file.write_text(
        json.dumps({"source": "src.wav", "target": "T", "refs": ["r1.wav", "r2.wav"]})
        + "\n"
    )
    (conv,) = load_conversions(plan_file)
    assert conv.target == "T" and conv.source.key == "src.wav" and len(conv.refs) == 2
    plan_file.write_text('{"source": "src.wav"}\n')
    with pytest.raises(EvalError, match="plan.jsonl:1"):
        load_conversions(plan_file)
