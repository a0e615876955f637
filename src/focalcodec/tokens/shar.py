"""Tokens as a Lhotse Shar field: ``codes.000000.tar``, ... aligned with cut shards.

NeMo keeps codec codes of a Shar corpus as an extra field next to its audio
(``codes.%06d.tar`` files, one per cut shard, written by lhotse's ``ArrayTarWriter``).
This module writes such a field from a finished token folder: tar ``i`` holds, for every
cut of cut shard ``i`` and in the same order, its tokens as a ``.npy`` (shape (L,),
int32) with a ``TemporalArray`` manifest (``temporal_dim`` 0, ``frame_shift`` = 1 /
token rate), so ::

    cuts = CutSet.from_shar(fields={"cuts": [...], "recording": [...], "codes": [...]})
    cut.codes.load()      # (L,) tokens; cut.load_codes() gives the cut's span

A cut whose tokens are missing (its audio failed) gets lhotse's placeholder (no data),
and the file is written again once it is there. Each tar is written under a hidden
name and renamed into place; ``<field>.focalcodec.json`` lists the files this package
wrote (before it writes them), and only those are ever replaced or deleted.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMismatchError, OutputExistsError, UsageError
from ..files.atomic import atomic_write
from .files import crc32_file

__all__ = ["FieldReport", "check_field", "field_file", "marker_path", "write_field"]

KIND = "focalcodec-shar-field"


def field_file(field: str, index: int) -> str:
    """The file of cut shard ``index`` (lhotse's and NeMo's naming)."""
    return f"{field}.{index:06d}.tar"


def marker_path(folder: Path, field: str) -> Path:
    return folder / f"{field}.focalcodec.json"


def _read_marker(folder: Path, field: str) -> dict[str, Any]:
    path = marker_path(folder, field)
    if not path.is_file():
        return {}
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        marker = None
    if not isinstance(marker, dict) or marker.get("kind") != KIND:
        raise OutputExistsError(f"{path}: not a focalcodec file; remove it yourself")
    return marker


def _write_marker(folder: Path, field: str, marker: dict[str, Any]) -> None:
    with atomic_write(marker_path(folder, field), force=True) as fileobj:
        fileobj.write(json.dumps(marker, indent=1).encode() + b"\n")


def _identity(meta: dict[str, Any]) -> tuple:
    return meta.get("model_name"), meta.get("config_hash")


def check_field(folder: Path, field: str, meta: dict[str, Any], force: bool) -> None:
    """Refuse to touch field files this package did not write; with ``force``, delete
    the ones it did (and its marker) so that the field is written again.

    Raises
    ------
    OutputExistsError
        ``folder`` holds ``<field>.*.tar`` files not listed in the marker.
    ModelMismatchError
        The field holds tokens of another model and ``force`` is off.
    """
    if not folder.is_dir():
        return
    marker = _read_marker(folder, field)
    ours = set(marker.get("files", {}))
    pattern = re.compile(re.escape(field) + r"\.\d+\.tar")
    present = sorted(p.name for p in folder.iterdir() if pattern.fullmatch(p.name))
    foreign = [name for name in present if name not in ours]
    if foreign:
        raise OutputExistsError(
            f"{folder / foreign[0]}: a {field!r} field that focalcodec did not write; "
            "nothing was changed (pick another output folder or --shar-field)"
        )
    if marker and _identity(marker) != _identity(meta) and not force:
        raise ModelMismatchError(
            f"{folder}: its {field!r} field holds tokens of "
            f"{marker.get('model_name') or 'another model'} (config "
            f"{marker.get('config_hash')}); use --force to replace it"
        )
    if force and marker:
        for name in ours:
            (folder / name).unlink(missing_ok=True)
        marker_path(folder, field).unlink()
    for stale in folder.glob(f".{field}.*.tar.part"):
        stale.unlink()


@dataclass
class FieldReport:
    """Files written and kept, and cuts that got a placeholder (no tokens)."""

    written: list[str]
    kept: int
    missing: int


def write_field(
    folder: str | os.PathLike,
    field: str,
    shards: Sequence[tuple[int, list[str]]],
    tokens: Callable[[str], np.ndarray | None],
    meta: dict[str, Any],
) -> FieldReport:
    """Write the field files of ``shards`` into ``folder``.

    Parameters
    ----------
    folder
        Where the field files go (checked with :func:`check_field` first).
    field
        The file stem (``codes``).
    shards
        ``(cut shard index, its cut ids in order)`` for every cut shard.
    tokens
        Tokens (L,) of a cut id, or None when it has none.
    meta
        The token folder's meta: ``token_rate``, ``model_name``, ``config_hash``.

    Returns
    -------
        A :class:`FieldReport`. A file whose cuts and tokens are unchanged since it
        was written is kept as it is.
    """
    folder = Path(folder)
    marker = _read_marker(folder, field) or {
        "kind": KIND,
        "field": field,
        "model_name": meta.get("model_name"),
        "config_hash": meta.get("config_hash"),
        "frame_shift": 1.0 / float(meta["token_rate"]),
        "files": {},
    }
    files: dict[str, Any] = marker["files"]
    # Listed before they exist, so that a crash leaves no file we would not own.
    for index, _ in shards:
        files.setdefault(field_file(field, index), {"planned": True})
    _write_marker(folder, field, marker)
    written, kept, missing = [], 0, 0
    for index, ids in shards:
        name = field_file(field, index)
        toks = [tokens(i) for i in ids]
        lost = sum(t is None for t in toks)
        missing += lost
        entry = files[name]
        if _unchanged(folder / name, entry, len(ids), lost):
            kept += 1
            continue
        _write_tar(folder, name, ids, toks, marker["frame_shift"])
        path = folder / name
        files[name] = {
            "bytes": path.stat().st_size,
            "crc32": crc32_file(path),
            "cuts": len(ids),
            "missing": lost,
        }
        written.append(name)
    _write_marker(folder, field, marker)
    return FieldReport(written, kept, missing)


def _unchanged(path: Path, entry: dict[str, Any], cuts: int, lost: int) -> bool:
    if (
        entry.get("planned")
        or entry.get("cuts") != cuts
        or entry.get("missing") != lost
    ):
        return False
    return (
        path.is_file()
        and path.stat().st_size == entry.get("bytes")
        and crc32_file(path) == entry.get("crc32")
    )


def _write_tar(folder: Path, name: str, ids: list[str], toks: list, shift: float):
    """One field file through lhotse's writer, under a hidden name, then renamed."""
    try:
        from lhotse.array import Array, TemporalArray
        from lhotse.shar.writers import ArrayTarWriter
    except ImportError:
        raise UsageError(
            "the shar format needs lhotse: pip install 'focalcodec[lhotse]'"
        ) from None
    tmp = folder / f".{name}.part"
    with ArrayTarWriter(str(tmp), shard_size=None, compression="numpy") as writer:
        for cut_id, t in zip(ids, toks, strict=True):
            if t is None:
                writer.write_placeholder(cut_id)
                continue
            codes = np.asarray(t, dtype=np.int32)
            array = Array("memory_npy", "", b"", list(codes.shape))
            manifest = TemporalArray(array, temporal_dim=0, frame_shift=shift, start=0)
            writer.write(cut_id, codes, manifest)
    if not tmp.exists():  # a shard without cuts: an empty archive
        tarfile.open(tmp, "w").close()
    with open(tmp, "rb+") as fileobj:
        os.fsync(fileobj.fileno())
    os.replace(tmp, folder / name)
