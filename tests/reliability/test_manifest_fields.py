"""Manifests: a field of the wrong type is one DataError naming the file and line (a
batch goes on with the other lines), and a ``duration`` that lies never sends a long
file through the model whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.errors import AudioError, DataError
from focalcodec.files.manifest import read_manifest, scan
from focalcodec.pipeline.loader import AudioDataset, estimate_length


def manifest(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "m.jsonl"
    lines = [(r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows]
    path.write_text("".join(lines))
    return path


GOOD = {"path": "a.wav", "speaker": "s1", "duration": 1.5, "split": "train"}


@pytest.mark.parametrize(
    "row, message",
    [
        ({"path": 5}, "field 'path' must be a non-empty string"),
        ({"path": ""}, "field 'path' must be a non-empty string"),
        ({"path": "a.wav", "duration": "long"}, "field 'duration' must be a number"),
        ({"path": "a.wav", "duration": -1}, "field 'duration' must be a number"),
        ({"path": "a.wav", "duration": True}, "field 'duration'"),
        ({"path": "a.wav", "split": ["train"]}, "field 'split' must be a string"),
        ({"path": "a.wav", "speaker": {"id": 1}}, "field 'speaker'"),
        ({"path": "a.wav", "id": 1.5}, "field 'id'"),
        ({"path": "a.wav", "text": 3}, "field 'text' must be a string"),
        ([1, 2], "each line needs a JSON object"),
        ("[" * 100_000, "not valid JSON|JSON nested too deeply"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_wrong_field_types_name_the_file_and_line(tmp_path, row, message):
    path = manifest(tmp_path, [GOOD, {**GOOD, "path": "b.wav"}, row])
    with pytest.raises(DataError, match=f"{path}:3: ({message})"):
        read_manifest(path)


def test_a_batch_collects_bad_lines_and_goes_on(tmp_path):
    rows = [GOOD, {"path": "b.wav", "duration": "x"}, {"path": "c.wav"}, {"path": 7}]
    path = manifest(tmp_path, rows)
    problems: list[tuple[str, str]] = []
    entries = scan(path, problems=problems)
    assert [e.path.name for e in entries] == ["a.wav", "c.wav"]
    assert [where for where, _ in problems] == [f"{path}:2", f"{path}:4"]
    assert all("must be" in why for _, why in problems)


def test_the_header_length_wins_over_a_lying_duration(tmp_path):
    audio = tmp_path / "long.wav"
    sf.write(audio, np.zeros(40 * 16000, np.float32), 16000)
    # The manifest says one second; the file holds forty.
    assert estimate_length(audio, 16000, duration=1.0) == 40 * 16000
    # Only an unreadable header falls back on the manifest.
    assert estimate_length(tmp_path / "missing.wav", 16000, duration=2.0) == 32000


def test_the_loader_refuses_a_file_longer_than_its_batch_from_the_header(tmp_path):
    audio = tmp_path / "long.wav"
    sf.write(audio, np.zeros(40 * 16000, np.float32), 16000)
    dataset = AudioDataset([audio], 16000, min_samples=320, max_samples=30 * 16000)
    index, result = dataset[0]
    assert index == 0 and isinstance(result, AudioError)
    assert "more than the 480000 planned" in str(result)
    fits = AudioDataset([audio], 16000, min_samples=320, max_samples=40 * 16000)
    assert len(fits[0][1]) == 40 * 16000


def test_tokenize_sends_a_long_file_with_a_lying_duration_the_long_way(
    tmp_path, golden_dir, monkeypatch
):
    """The model never sees more than one window of it."""
    from focalcodec import FocalCodec
    from focalcodec.files.manifest import scan as scan_entries
    from focalcodec.pipeline.tokenize import TokenizeOptions, tokenize_entries
    from focalcodec.runtime import setup

    audio = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(audio, 0.1 * rng.standard_normal(40 * 16000).astype(np.float32), 16000)
    path = manifest(tmp_path, [{"path": "long.wav", "duration": 0.5}])
    codec = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz").eval()
    seen: list[int] = []
    for name in ("sig_to_toks", "encode_step"):
        real = getattr(codec, name)

        def spy(sig, *args, _real=real, **kwargs):
            seen.append(int(sig.shape[-1]))
            return _real(sig, *args, **kwargs)

        monkeypatch.setattr(codec, name, spy)
    options = TokenizeOptions(long_seconds=30.0, quiet=True, workers=0)
    report = tokenize_entries(
        scan_entries(path), tmp_path / "toks", codec, options, setup("cpu")
    )
    assert report.written == 1 and not report.any_failed
    assert seen and max(seen) <= 31 * 16000
