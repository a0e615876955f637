"""The utterances to evaluate: a directory of audio files or a JSONL manifest.

A manifest has one JSON object per line with at least ``path`` (relative to the
manifest's folder, or absolute); ``speaker``, ``split``, ``language`` and ``duration``
are used when present (the layout of ``shared/audio/manifest.jsonl``). For a directory,
every audio file below it is used, in sorted order, and the speaker is taken to be the
name of the folder holding the file (LibriSpeech and VCTK layouts), which is what
automatic voice-conversion pairing needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..files.manifest import scan
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
    try:
        entries = scan(data, check_files=True)
    except DataError as exc:
        raise EvalError(str(exc)) from None
    found = [Utterance(e.id, e.path.resolve(), e.speaker, e.split) for e in entries]
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
