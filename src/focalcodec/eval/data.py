"""The utterances to evaluate: a directory of audio files or a JSONL manifest.

A manifest has one JSON object per line with at least ``path`` (relative to the
manifest's folder, or absolute); ``speaker``, ``split``, ``language`` and ``duration``
are used when present (the layout of ``shared/audio/manifest.jsonl``). For a directory,
every audio file below it is used, in sorted order, and the speaker is taken to be the
name of the folder holding the file (LibriSpeech and VCTK layouts), which is what
automatic voice-conversion pairing needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..audio import AUDIO_SUFFIXES
from .base import EvalError

__all__ = ["Utterance", "find_utterances"]


@dataclass(frozen=True)
class Utterance:
    """One input file.

    Attributes
    ----------
    key
        Path relative to the data set root, with ``/`` separators; unique.
    path
        Absolute path of the audio file.
    speaker
        Speaker label, or ``None`` when unknown.
    split
        Manifest split (``train``, ``test``, ...), or ``None``.
    """

    key: str
    path: Path
    speaker: str | None = None
    split: str | None = None


def find_utterances(
    data: str | Path,
    *,
    split: str | None = None,
    speakers: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Utterance]:
    """List the utterances of a directory or JSONL manifest.

    Parameters
    ----------
    data
        A directory (searched recursively) or a ``.jsonl`` manifest.
    split
        Keep only manifest entries of this split.
    speakers
        Keep only these speakers.
    limit
        Keep at most this many utterances (after filtering), in order.

    Returns
    -------
        The utterances, sorted by key.
    """
    root = Path(data)
    if root.is_dir():
        found = _from_directory(root)
    elif root.is_file():
        found = _from_manifest(root)
    else:
        raise EvalError(f"{data}: no such directory or manifest")
    if split is not None:
        found = [u for u in found if u.split == split]
    if speakers:
        wanted = set(speakers)
        found = [u for u in found if u.speaker in wanted]
    found = sorted(found, key=lambda u: u.key)
    if limit is not None:
        found = found[: max(limit, 0)]
    if not found:
        raise EvalError(f"{data}: no audio files to evaluate (check --split/--limit)")
    return found


def _from_directory(root: Path) -> list[Utterance]:
    files = [
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    ]
    return [
        Utterance(p.relative_to(root).as_posix(), p.resolve(), p.parent.name or None)
        for p in files
    ]


def _from_manifest(manifest: Path) -> list[Utterance]:
    base = manifest.resolve().parent
    found: dict[str, Utterance] = {}
    with open(manifest, encoding="utf-8") as fileobj:
        for lineno, line in enumerate(fileobj, start=1):
            if not line.strip():
                continue
            entry = _parse_line(manifest, lineno, line)
            path = Path(entry["path"])
            full = path if path.is_absolute() else base / path
            if not full.is_file():
                raise EvalError(f"{manifest}:{lineno}: audio file {full} not found")
            key = path.as_posix()
            if key in found:
                raise EvalError(f"{manifest}:{lineno}: {key} is listed twice")
            speaker = entry.get("speaker")
            split = entry.get("split")
            found[key] = Utterance(
                key,
                full.resolve(),
                None if speaker is None else str(speaker),
                None if split is None else str(split),
            )
    return list(found.values())


def _parse_line(manifest: Path, lineno: int, line: str) -> dict:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalError(f"{manifest}:{lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise EvalError(f'{manifest}:{lineno}: each line needs a "path" string')
    return entry
