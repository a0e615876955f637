"""The one place that turns an audio folder or a JSONL manifest into a list of files.

Used by the command line (batch inputs, tokenization, voice-conversion references),
training, evaluation and the probes, so all of them accept the same sources and report
the same errors.

A manifest has one JSON object per line with at least ``path`` (relative to the
manifest's folder, or absolute); every other field (``speaker``, ``split``,
``language``, ``text``, ``duration``, ...) is kept in :attr:`Entry.meta`. The fields
this package reads are type-checked on reading (:data:`FIELD_TYPES`): a line with a
wrong type is a :class:`~focalcodec.errors.DataError` naming the file and line. For a
folder, every audio file below it is listed in sorted order, and the speaker is the name
of the folder that holds the file (the LibriSpeech and VCTK layouts).

A folder walk stays inside the real folder: a symlink (to a file or a folder) whose
target lies outside it, or that points back up to a folder above itself, is not
followed; neither is an unreadable folder or a broken link. Each is a *problem*: with a
``problems`` list the walk notes ``(path, reason)`` there and goes on (a batch reports
each on one line and fails), without one it raises :class:`DataError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .audio import AUDIO_SUFFIXES

__all__ = ["FIELD_TYPES", "Entry", "Problems", "find_files", "read_manifest", "scan"]

# What a walk or a manifest could not use: (path or "manifest:line", reason).
Problems = list[tuple[str, str]]
# Manifest fields that the package reads, and what they must hold (``duration``: a
# finite number of seconds >= 0). Other fields are kept as they are.
FIELD_TYPES: dict[str, str] = {
    "path": "a non-empty string",
    "id": "a string or an integer",
    "duration": "a number of seconds >= 0",
    "split": "a string",
    "speaker": "a string or an integer",
    "language": "a string",
    "text": "a string",
}


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
    *,
    problems: Problems | None = None,
) -> list[Path]:
    """Files under ``root`` (recursive, hidden names skipped) with one of ``suffixes``.

    ``exclude`` lists folders whose contents are left out (for example an output folder
    inside the input folder), compared on resolved paths. Sorted by path. Only files
    whose real path lies inside the real ``root`` are listed; links that lead out or up,
    broken links and unreadable folders are problems (see the module docstring).
    """
    wanted = {s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes}
    skip = [Path(p).resolve() for p in exclude]
    top = Path(root).resolve()
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def problem(path: str | os.PathLike, reason: str) -> None:
        if problems is None:
            raise DataError(f"{path}: {reason}")
        problems.append((str(path), reason))

    def unreadable(exc: OSError) -> None:
        problem(exc.filename or root, f"cannot read the folder ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(
        root, onerror=unreadable, followlinks=True
    ):
        here = Path(dirpath)
        resolved = here.resolve()
        if any(resolved == s or s in resolved.parents for s in skip):
            dirnames[:] = []
            continue
        # Each real folder once, whatever the links that reach it.
        st = os.stat(here)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        visible = [d for d in dirnames if not d.startswith(".")]
        dirnames[:] = [d for d in visible if _follow(here / d, top, resolved, problem)]
        for name in filenames:
            path = here / name
            if name.startswith(".") or Path(name).suffix.lower() not in wanted:
                continue
            if not path.exists():
                problem(path, "broken symlink (its target does not exist)")
            elif path.is_symlink() and not _inside(path, top, problem):
                continue
            elif path.is_file():
                found.append(path)
    return sorted(found)


def _inside(path: Path, top: Path, problem) -> bool:
    """Whether a link's target lies inside ``top`` (a problem is noted if not)."""
    target = path.resolve()
    if target == top or top in target.parents:
        return True
    problem(path, f"symlink to {target}, outside the input folder {top}: not followed")
    return False


def _follow(path: Path, top: Path, here: Path, problem) -> bool:
    """Whether the walk enters the sub-folder ``path`` of the real folder ``here``."""
    if not path.is_symlink():
        return True
    if not path.exists():
        problem(path, "broken symlink (its target does not exist)")
        return False
    if not _inside(path, top, problem):
        return False
    target = path.resolve()
    if target == here or target in here.parents:
        problem(path, f"symlink up to {target}, a folder above it: not followed")
        return False
    return True


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    check_files: bool = False,
    *,
    problems: Problems | None = None,
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
    problems
        Where a batch collects bad lines (``("manifest:line", reason)``) and goes on
        with the others; None raises on the first.

    Returns
    -------
        A list of :class:`Entry`; :class:`~focalcodec.errors.DataError` names the line
        of a malformed entry (not JSON, a field of the wrong type, see
        :data:`FIELD_TYPES`), a repeated id or (with ``check_files``) a missing file.
    """
    path = Path(path)
    base = (Path(root) if root is not None else path.parent).resolve()
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = _entry(line, lineno, base, seen, check_files)
                except DataError as exc:
                    if problems is None:
                        raise DataError(f"{path}:{exc}") from None
                    where, _, why = str(exc).partition(": ")
                    problems.append((f"{path}:{where}", why))
                    continue
                entries.append(entry)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    return entries


def _entry(
    line: str, lineno: int, base: Path, seen: dict[str, int], check_files: bool
) -> Entry:
    """One manifest line as an Entry; DataError("LINE: reason") when unusable."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{lineno}: JSON nested too deeply") from None
    if not isinstance(item, dict):
        raise DataError(f'{lineno}: each line needs a JSON object with a "path"')
    for name, what in FIELD_TYPES.items():
        if name in item and not _field_ok(name, item[name]):
            raise DataError(
                f"{lineno}: field {name!r} must be {what}, got {item[name]!r:.60}"
            )
    if "path" not in item:
        raise DataError(f'{lineno}: each line needs a "path" string')
    rel = Path(item["path"])
    key = str(item.get("id", item["path"]))
    if key in seen:
        raise DataError(
            f"{lineno}: id {key!r} is listed twice (first on line {seen[key]})"
        )
    seen[key] = lineno
    meta = {k: v for k, v in item.items() if k != "path"}
    full = rel if rel.is_absolute() else base / rel
    if check_files and not full.is_file():
        raise DataError(f"{lineno}: audio file {full} not found")
    return Entry(key, full, meta)


def _field_ok(name: str, value: Any) -> bool:
    if value is None and name != "path":
        return True
    if isinstance(value, bool):
        return False
    if name == "path":
        return isinstance(value, str) and bool(value.strip()) and "\0" not in value
    if name == "duration":
        return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
    if name in ("id", "speaker"):
        return isinstance(value, (str, int))
    return isinstance(value, str)


def scan(
    source: str | os.PathLike,
    *,
    suffixes: Iterable[str] = AUDIO_SUFFIXES,
    exclude: Sequence[str | os.PathLike] = (),
    root: str | os.PathLike | None = None,
    check_files: bool = False,
    problems: Problems | None = None,
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
    problems
        Where a batch collects what could not be used (links out of the folder,
        unreadable folders, bad manifest lines) and goes on; None raises on the first.

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
            for f in find_files(path, suffixes, exclude, problems=problems)
        ]
    elif path.is_file():
        entries = read_manifest(path, root, check_files, problems=problems)
    else:
        raise DataError(
            f"{source}: no such folder or manifest; give an audio folder or a .jsonl "
            "manifest"
        )
    if not entries and not problems:
        raise DataError(f"{source}: no audio files found")
    return entries
