"""The one place that turns an audio folder or a JSONL manifest into a list of files.

Used by the command line (batch inputs, tokenization, voice-conversion references),
training, evaluation and the probes, so all of them accept the same sources and report
the same errors.

A manifest has one JSON object per line with at least ``path`` (relative to the
manifest's folder, or absolute); every other field (``speaker``, ``split``,
``language``, ``text``, ``duration``, ...) is kept in :attr:`Entry.meta`. For a folder,
every audio file below it is listed in sorted order, and the speaker is the name of the
folder that holds the file (the LibriSpeech and VCTK layouts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .audio import AUDIO_SUFFIXES

__all__ = ["Entry", "find_files", "read_manifest", "scan"]


@dataclass(frozen=True)
class Entry:
    """One audio file of a folder or manifest.

    Attributes
    ----------
    id
        Unique key: the path relative to the folder (``/`` separators), or the
        manifest's ``id`` field, else its ``path`` string.
    path
        Absolute path of the audio file.
    meta
        The manifest fields other than ``path`` (for a folder: ``speaker``).
    """

    id: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def speaker(self) -> str | None:
        return _text(self.meta.get("speaker"))

    @property
    def split(self) -> str | None:
        return _text(self.meta.get("split"))

    @property
    def duration(self) -> float | None:
        value = self.meta.get("duration")
        return None if value is None else float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def find_files(
    root: str | os.PathLike,
    suffixes: Iterable[str] = AUDIO_SUFFIXES,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Files under ``root`` (recursive, hidden names skipped) with one of ``suffixes``.

    ``exclude`` lists folders whose contents are left out (for example an output folder
    inside the input folder), compared on resolved paths. Sorted by path.
    """
    wanted = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes}
    skip = [Path(p).resolve() for p in exclude]
    found = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        resolved = here.resolve()
        if any(resolved == s or s in resolved.parents for s in skip):
            dirnames[:] = []
            continue
        # Symlinked folders are followed, each real folder once: a link back up the
        # tree would otherwise make the walk endless.
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = here / name
            if name.startswith(".") or Path(name).suffix.lower() not in wanted:
                continue
            if path.is_file():
                found.append(path)
    return sorted(found)


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    check_files: bool = False,
) -> list[Entry]:
    """Entries of a JSONL manifest, in file order.

    Parameters
    ----------
    path
        The ``.jsonl`` file; each non-empty line is an object with a ``path`` string.
    root
        Folder that relative paths start from; defaults to the manifest's folder.
    check_files
        Also refuse an entry whose audio file does not exist.

    Returns
    -------
        A list of :class:`Entry`; :class:`~focalcodec.errors.DataError` names the line
        of a malformed entry, a repeated id or (with ``check_files``) a missing file.
    """
    path = Path(path)
    base = (Path(root) if root is not None else path.parent).resolve()
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise DataError(f'{path}:{lineno}: each line needs a "path" string')
        rel = Path(item["path"])
        key = str(item.get("id", item["path"]))
        if key in seen:
            raise DataError(
                f"{path}:{lineno}: id {key!r} is listed twice (first on line "
                f"{seen[key]})"
            )
        seen[key] = lineno
        meta = {k: v for k, v in item.items() if k != "path"}
        full = rel if rel.is_absolute() else base / rel
        if check_files and not full.is_file():
            raise DataError(f"{path}:{lineno}: audio file {full} not found")
        entries.append(Entry(key, full, meta))
    return entries


def scan(
    source: str | os.PathLike,
    *,
    suffixes: Iterable[str] = AUDIO_SUFFIXES,
    exclude: Sequence[str | os.PathLike] = (),
    root: str | os.PathLike | None = None,
    check_files: bool = False,
) -> list[Entry]:
    """Entries of an audio folder or a JSONL manifest.

    Parameters
    ----------
    source
        A folder (searched recursively) or a manifest file.
    suffixes
        Audio suffixes to list from a folder.
    exclude
        Folders to leave out of a folder scan (see :func:`find_files`).
    root
        Base folder of a manifest's relative paths (default: the manifest's folder).
    check_files
        Raise :class:`~focalcodec.errors.DataError` for a manifest entry whose file is
        missing (otherwise the caller reports it when it reads the file).

    Returns
    -------
        The entries; a folder's in sorted order, a manifest's in file order. An empty
        source is a :class:`~focalcodec.errors.DataError`.
    """
    path = Path(source)
    if path.is_dir():
        entries = [
            Entry(
                f.relative_to(path).as_posix(),
                f.resolve(),
                {"speaker": f.parent.name} if f.parent != path else {},
            )
            for f in find_files(path, suffixes, exclude)
        ]
    elif path.is_file():
        entries = read_manifest(path, root, check_files)
    else:
        raise DataError(
            f"{source}: no such folder or manifest; give an audio folder or a .jsonl "
            "manifest"
        )
    if not entries:
        raise DataError(f"{source}: no audio files found")
    return entries
