"""Probe manifests for the public data sets of the FocalCodec papers.

Each reader walks a data set in the folder layout its download ships with and returns
manifest rows (``path``, ``split``, a label or ``text``, ``speaker``); :func:`write_rows`
writes them as JSONL with paths relative to the manifest. The audio is only read.

=================== ==================================== ==========================
data set            splits                               fields
=================== ==================================== ==========================
librispeech-asr     train-clean-100 + 360 / dev-clean /  text, speaker
                    test-clean (``--train`` etc.)
librispeech-speaker one subset (train-clean-100), 80/10/ speaker
                    10 per speaker, seeded
iemocap             sessions 1-4 train (valid carved by  emotion (neu, hap+exc, ang,
                    the probe), session 5 test           sad), speaker, session
speech-commands     validation_list.txt / testing_list.  keyword (35 words, or 10 +
                    txt / the rest                       _unknown_), speaker
slurp               train / devel / test .jsonl          intent, scenario, action,
                                                         text
=================== ==================================== ==========================
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files.atomic import atomic_write
from ..files.manifest import Entry
from .data import assign_splits

__all__ = ["DATASETS", "add_prepare_arguments", "run_prepare", "write_rows"]

Row = dict[str, Any]
KEYWORDS_10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
_EMOTIONS = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path} not found: {what}")
    return path


def librispeech_asr(
    root: Path, train: list[str], valid: list[str], test: list[str]
) -> list[Row]:
    """LibriSpeech utterances with transcripts (``<subset>/<spk>/<chapter>/``)."""
    rows = []
    for split, subsets in (("train", train), ("valid", valid), ("test", test)):
        for subset in subsets:
            folder = _need(root / subset, "expected a LibriSpeech subset folder")
            for trans in sorted(folder.glob("*/*/*.trans.txt")):
                for line in trans.read_text(encoding="utf-8").splitlines():
                    utt, _, text = line.strip().partition(" ")
                    if not utt:
                        continue
                    rows.append(
                        {
                            "path": trans.parent / f"{utt}.flac",
                            "split": split,
                            "text": text,
                            "speaker": utt.split("-")[0],
                            "subset": subset,
                        }
                    )
    return rows


def librispeech_speaker(root: Path, subsets: list[str], seed: int) -> list[Row]:
    """Speaker identification: every utterance of ``subsets``, 80/10/10 per speaker."""
    rows = librispeech_asr(root, subsets, [], [])
    entries = [Entry(str(r["path"]), r["path"], r) for r in rows]
    splits = assign_splits(
        entries,
        resplit=True,
        valid_fraction=0.1,
        test_fraction=0.1,
        seed=seed,
        group=lambda e: e.meta["speaker"],
    )
    out = []
    for name in ("train", "valid", "test"):
        out += [{**e.meta, "split": name} for e in getattr(splits, name)]
    return sorted(out, key=lambda r: str(r["path"]))


def iemocap(root: Path, test_session: int) -> list[Row]:
    """IEMOCAP, four classes (excited merged into happy), one session for testing."""
    rows = []
    for session in range(1, 6):
        base = _need(root / f"Session{session}", "expected IEMOCAP_full_release")
        for labels in sorted((base / "dialog" / "EmoEvaluation").glob("*.txt")):
            for line in labels.read_text(
                encoding="utf-8", errors="replace"
            ).splitlines():
                parts = line.split("\t")
                if not line.startswith("[") or len(parts) < 3:
                    continue
                utt, emotion = parts[1].strip(), parts[2].strip()
                if emotion not in _EMOTIONS:
                    continue
                dialog = utt.rsplit("_", 1)[0]
                rows.append(
                    {
                        "path": base / "sentences" / "wav" / dialog / f"{utt}.wav",
                        "split": "test" if session == test_session else "train",
                        "emotion": _EMOTIONS[emotion],
                        "speaker": utt[:5] + utt.rsplit("_", 1)[1][0],
                        "session": session,
                    }
                )
    return rows


def speech_commands(root: Path, classes: int) -> list[Row]:
    """Speech Commands (v0.01 or v0.02): 35 keywords, or 10 plus ``_unknown_``."""
    lists = {}
    for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        text = _need(root / name, "expected the Speech Commands folder").read_text()
        lists.update({line.strip(): split for line in text.splitlines() if line})
    rows = []
    for wav in sorted(root.glob("*/*.wav")):
        word = wav.parent.name
        if word.startswith("_"):
            continue  # _background_noise_: long noise files, not keywords
        if classes == 12 and word not in KEYWORDS_10:
            word = "_unknown_"
        rel = f"{wav.parent.name}/{wav.name}"
        rows.append(
            {
                "path": wav,
                "split": lists.get(rel, "train"),
                "keyword": word,
                "speaker": wav.stem.split("_nohash_")[0],
            }
        )
    return rows


def slurp(root: Path, audio: Path | None) -> list[Row]:
    """SLURP real recordings, one row per recording, labelled with the intent."""
    folder = _need(root / "dataset" / "slurp", "expected the SLURP repository")
    if audio is None:
        options = [
            root / "audio" / "slurp_real",
            root / "scripts" / "audio" / "slurp_real",
        ]
        audio = next((p for p in options if p.is_dir()), options[0])
    _need(audio, "the slurp_real audio folder (pass --audio)")
    rows = []
    for split, name in (("train", "train"), ("valid", "devel"), ("test", "test")):
        path = _need(folder / f"{name}.jsonl", "expected SLURP's .jsonl files")
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            for rec in item.get("recordings", []):
                rows.append(
                    {
                        "path": audio / rec["file"],
                        "split": split,
                        "intent": item["intent"],
                        "scenario": item["scenario"],
                        "action": item["action"],
                        "text": item["sentence"],
                        "slurp_id": item["slurp_id"],
                    }
                )
    return rows


DATASETS = {
    "librispeech-asr": "LibriSpeech transcripts (ASR probe)",
    "librispeech-speaker": "LibriSpeech speaker identification",
    "iemocap": "IEMOCAP emotion recognition (4 classes)",
    "speech-commands": "Speech Commands keyword spotting",
    "slurp": "SLURP intent classification",
}


def write_rows(rows: list[Row], output: Path, force: bool = False) -> int:
    """Write rows as a JSONL manifest (paths relative to its folder); returns count."""
    if not rows:
        raise DataError("no utterances found; check the data set folder")
    missing = [r["path"] for r in rows if not Path(r["path"]).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} listed audio file(s) are missing, e.g. {missing[0]}"
        )
    output = Path(output)
    base = output.resolve().parent
    lines = []
    for row in rows:
        rel = os.path.relpath(Path(row["path"]).resolve(), base)
        lines.append(
            json.dumps({**row, "path": Path(rel).as_posix()}, ensure_ascii=False)
        )
    with atomic_write(output, force=force) as fileobj:
        fileobj.write(("\n".join(lines) + "\n").encode())
    return len(rows)


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``focalcodec probe prepare``."""
    p.add_argument("dataset", choices=sorted(DATASETS), help="which data set")
    p.add_argument("root", help="the data set's folder, as downloaded")
    p.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    p.add_argument("--train", default="train-clean-100,train-clean-360")
    p.add_argument("--valid", default="dev-clean")
    p.add_argument("--test", default="test-clean")
    p.add_argument(
        "--subsets", default="train-clean-100", help="librispeech-speaker subsets"
    )
    p.add_argument("--seed", type=int, default=0, help="librispeech-speaker split seed")
    p.add_argument("--test-session", type=int, default=5, choices=range(1, 6))
    p.add_argument("--classes", type=int, default=35, choices=(12, 35))
    p.add_argument("--audio", help="slurp: the slurp_real audio folder")
    p.add_argument("--force", action="store_true", help="overwrite the manifest")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def run_prepare(args: argparse.Namespace) -> int:
    """Build the rows of ``args.dataset`` and write the manifest; returns the count."""
    root = _need(Path(args.root).expanduser(), "give the data set's folder")
    name = args.dataset
    if name == "librispeech-asr":
        rows = librispeech_asr(
            root, _names(args.train), _names(args.valid), _names(args.test)
        )
    elif name == "librispeech-speaker":
        rows = librispeech_speaker(root, _names(args.subsets), args.seed)
    elif name == "iemocap":
        rows = iemocap(root, args.test_session)
    elif name == "speech-commands":
        rows = speech_commands(root, args.classes)
    else:
        rows = slurp(root, Path(args.audio) if args.audio else None)
    return write_rows(rows, Path(args.output), force=args.force)
