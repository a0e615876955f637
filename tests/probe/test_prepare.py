"""Manifests of the public data sets, built from miniature copies of their layouts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from focalcodec.cli import main
from focalcodec.errors import DataError, OutputExistsError
from focalcodec.files.manifest import scan
from focalcodec.probe.prepare import (
    iemocap,
    librispeech_asr,
    librispeech_speaker,
    slurp,
    speech_commands,
    write_rows,
)


def wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 16000)


def librispeech(root: Path, subset: str, speakers=("19", "26"), utts=3) -> None:
    for spk in speakers:
        folder = root / subset / spk / "100"
        lines = []
        for i in range(utts):
            utt = f"{spk}-100-{i:04d}"
            wav(folder / f"{utt}.flac")
            lines.append(f"{utt} WORDS OF {spk} NUMBER {i}")
        (folder / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")


def read(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_librispeech_asr(tmp_path):
    root = tmp_path / "LibriSpeech"
    for subset in ("train-clean-100", "dev-clean", "test-clean"):
        librispeech(root, subset)
    rows = librispeech_asr(root, ["train-clean-100"], ["dev-clean"], ["test-clean"])
    out = tmp_path / "lists" / "asr.jsonl"
    assert write_rows(rows, out) == 18
    entries = scan(out, check_files=True)  # relative paths resolve from the manifest
    assert Counter(e.split for e in entries) == {"train": 6, "valid": 6, "test": 6}
    first = read(out)[0]
    assert first["path"].startswith("../LibriSpeech/train-clean-100/19/100/")
    assert first["text"] == "WORDS OF 19 NUMBER 0" and first["speaker"] == "19"
    with pytest.raises(OutputExistsError):
        write_rows(rows, out)
    with pytest.raises(DataError, match="LibriSpeech subset"):
        librispeech_asr(root, ["train-clean-360"], [], [])


def test_librispeech_speaker_splits_each_speaker(tmp_path):
    librispeech(tmp_path, "train-clean-100", utts=10)
    rows = librispeech_speaker(tmp_path, ["train-clean-100"], seed=0)
    counts = Counter((r["speaker"], r["split"]) for r in rows)
    for spk in ("19", "26"):
        assert [counts[spk, s] for s in ("train", "valid", "test")] == [8, 1, 1]
    again = librispeech_speaker(tmp_path, ["train-clean-100"], seed=0)
    assert [r["split"] for r in again] == [r["split"] for r in rows]


def test_iemocap_four_classes_and_test_session(tmp_path):
    for n in range(1, 6):
        dialog = f"Ses0{n}F_impro01"
        lines = ["% header"]
        for i, emo in enumerate(("neu", "exc", "fru", "ang", "sad", "hap")):
            utt = f"{dialog}_{'FM'[i % 2]}00{i}"
            wav(tmp_path / f"Session{n}" / "sentences" / "wav" / dialog / f"{utt}.wav")
            lines.append(f"[1.0 - 2.0]\t{utt}\t{emo}\t[2.5, 2.5, 2.5]")
        labels = tmp_path / f"Session{n}" / "dialog" / "EmoEvaluation"
        labels.mkdir(parents=True)
        (labels / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    rows = iemocap(tmp_path, test_session=5)
    assert len(rows) == 25  # frustration is not one of the four classes
    assert Counter(r["emotion"] for r in rows) == {
        "neu": 5,
        "hap": 10,
        "ang": 5,
        "sad": 5,
    }
    assert {r["session"] for r in rows if r["split"] == "test"} == {5}
    assert rows[1]["speaker"] == "Ses01M"
    write_rows(rows, tmp_path / "iemocap.jsonl")


def test_speech_commands_lists_and_unknown_class(tmp_path):
    for word in ("yes", "no", "cat"):
        for speaker in ("aa11", "bb22", "cc33"):
            wav(tmp_path / word / f"{speaker}_nohash_0.wav")
    wav(tmp_path / "_background_noise_" / "white_noise.wav")
    (tmp_path / "validation_list.txt").write_text("yes/bb22_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text(
        "no/cc33_nohash_0.wav\ncat/cc33_nohash_0.wav\n"
    )
    rows = speech_commands(tmp_path, classes=35)
    assert len(rows) == 9 and Counter(r["split"] for r in rows)["test"] == 2
    assert {r["keyword"] for r in rows} == {"yes", "no", "cat"}
    rows12 = speech_commands(tmp_path, classes=12)
    assert {r["keyword"] for r in rows12} == {"yes", "no", "_unknown_"}
    assert rows[0]["speaker"] == "aa11"


def test_slurp_rows_per_recording(tmp_path):
    folder = tmp_path / "dataset" / "slurp"
    folder.mkdir(parents=True)
    for split, n in (("train", 0), ("devel", 1), ("test", 2)):
        item = {
            "slurp_id": n,
            "sentence": f"wake me up at {n}",
            "intent": "alarm_set",
            "scenario": "alarm",
            "action": "set",
            "recordings": [{"file": f"audio-{n}a.flac"}, {"file": f"audio-{n}b.flac"}],
        }
        (folder / f"{split}.jsonl").write_text(json.dumps(item) + "\n")
        for tag in "ab":
            wav(tmp_path / "audio" / "slurp_real" / f"audio-{n}{tag}.flac")
    rows = slurp(tmp_path, None)
    assert [r["split"] for r in rows] == ["train"] * 2 + ["valid"] * 2 + ["test"] * 2
    assert rows[0]["intent"] == "alarm_set" and rows[0]["text"] == "wake me up at 0"
    (tmp_path / "audio" / "slurp_real" / "audio-2b.flac").unlink()
    with pytest.raises(DataError, match="1 listed audio file"):
        write_rows(slurp(tmp_path, None), tmp_path / "slurp.jsonl")


def test_prepare_command(tmp_path, capsys):
    librispeech(tmp_path / "ls", "train-clean-100", utts=10)
    out = tmp_path / "spk.jsonl"
    args = [
        "probe",
        "prepare",
        "librispeech-speaker",
        str(tmp_path / "ls"),
        "-o",
        str(out),
    ]
    assert main(args) == 0 and len(read(out)) == 20
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "wrote 20 entries" in capsys.readouterr().err
    missing = ["probe", "prepare", "iemocap", str(tmp_path / "nowhere"), "-o", str(out)]
    assert main(missing) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
