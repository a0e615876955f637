"""Writing token folders from one or many processes (ranks).

:func:`open_folder` (one process) creates or checks ``meta.json``; then each rank's
:class:`TokenWriter` adds items, writing data files and a journal of its own;
:func:`finish` (one process, after all writers) verifies every file, drops duplicates and
damaged files and writes the index. The layout is described in
:mod:`focalcodec.tokens.files`; reading is :mod:`focalcodec.tokens.dataset`.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FormatError, InputError, ModelMismatchError
from ..files.atomic import atomic_write
from .columns import FILE_COLUMNS, check_plan, folder_columns, resumed_plan
from .files import (
    FILE_KEYS,
    INDEX,
    META,
    NEXT_INDEX,
    NEXT_TOKENS,
    OFFSETS,
    TOKENS,
    Part,
    crc32_file,
    data_file_name,
    full_meta,
    index_parts,
    is_data_file,
    is_token_folder,
    journal_name,
    journal_paths,
    load_data,
    next_part_number,
    read_journal,
    read_jsonl,
    read_meta,
    serialize,
)

__all__ = [
    "FinishReport",
    "TokenWriter",
    "completed_ids",
    "finish",
    "open_folder",
    "owner_rank",
    "token_meta",
]


def token_meta(codec: Any) -> dict[str, Any]:
    """Model identity of a codec as stored in ``meta.json``.

    Returns
    -------
        ``model_name``, ``config_hash``, ``weights_hash`` (so that a folder is never
        resumed with other weights of the same architecture; an ONNX export gives the
        digest its manifest records),
        ``codebook_size``, ``bits_per_token``, ``token_rate`` and ``sample_rate`` (of
        the input).
    """
    from ..identity import header_for, weights_hash

    header = header_for(codec)
    return {
        "model_name": header.model_name,
        "config_hash": header.model_hash.hex(),
        "weights_hash": weights_hash(codec),
        "codebook_size": 2**header.bits_per_token,
        "bits_per_token": header.bits_per_token,
        "token_rate": float(codec.token_rate),
        "sample_rate": header.sample_rate_input,
    }


def owner_rank(item_id: str, world_size: int) -> int:
    """The rank that tokenizes ``item_id``: a stable hash of the id, so that the split
    does not depend on the order or number of items, only on the number of ranks."""
    return zlib.crc32(item_id.encode("utf-8")) % world_size


def open_folder(
    folder: str | os.PathLike,
    meta: dict[str, Any],
    *,
    fmt: str = "npy",
    force: bool = False,
) -> dict[str, Any]:
    """Create a token folder, or check that an existing one fits ``meta``.

    Call on one process before any :class:`TokenWriter` starts.

    Parameters
    ----------
    folder
        The output folder (created if missing).
    meta
        Model identity (see :func:`token_meta`); needs at least ``codebook_size`` or
        ``bits_per_token``.
    fmt
        ``npy`` or ``parquet``.
    force
        Start over: delete the files this package wrote in ``folder``, and only if
        ``folder`` is a token folder (its ``meta.json`` says so); never another file,
        never a folder. A folder that holds files of our names (``meta.json``,
        ``index.jsonl``, ``tokens.npy``, ...) without our ``meta.json`` is refused,
        with or without ``force``: they are the user's.

    Returns
    -------
        The folder's full meta.
    """
    folder = Path(folder)
    full = full_meta(meta, fmt)
    if folder.exists() and not folder.is_dir():
        raise FormatError(f"{folder}: output exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    ours = is_token_folder(folder)
    if not ours:
        _refuse_foreign(folder)
    if force and ours:
        _clear(folder)
    _recover(folder)
    path = folder / META
    if not path.exists():
        with atomic_write(path) as fileobj:
            fileobj.write(json.dumps(full, indent=2).encode() + b"\n")
        return full
    old = read_meta(folder)
    if "weights_hash" not in old:
        # Written before folders recorded their weights: nothing to compare them with.
        full = {k: v for k, v in full.items() if k != "weights_hash"}
    if old != full:
        raise ModelMismatchError(
            f"{folder}: holds {old.get('format')} tokens from "
            f"{old.get('model_name') or 'a model'} (config {old.get('config_hash')}), "
            f"not {fmt} tokens from {full.get('model_name') or 'this model'} (config "
            f"{full.get('config_hash')}); use another output folder, or --force to "
            "start over"
        )
    return old


def _own_name(name: str) -> bool:
    """A name this package gives files of a token folder (this format or 0.1's)."""
    if name in (META, INDEX, NEXT_INDEX, NEXT_TOKENS) or is_data_file(name):
        return True
    # Journals, and shards of the format before this one (focalcodec 0.1).
    return bool(re.fullmatch(r"journal-r\d+\.jsonl|shard-\d+\.safetensors", name))


def _refuse_foreign(folder: Path) -> None:
    """Refuse a folder that is not a token folder but holds files of our names."""
    clash = sorted(p.name for p in folder.iterdir() if _own_name(p.name))
    if clash:
        raise FormatError(
            f"{folder}: is not a focalcodec token folder (no {META} of ours) but holds "
            f"{', '.join(clash[:4])}; they are left alone, even with --force: write "
            "the tokens to another folder"
        )


def _clear(folder: Path) -> None:
    """Delete the files of a token folder (checked to be one) that this package
    wrote: regular files and links of its own names, never a folder."""
    for path in folder.iterdir():
        if _own_name(path.name) and (path.is_symlink() or path.is_file()):
            path.unlink()


def _recover(folder: Path) -> None:
    """Complete or undo a :func:`finish` that was interrupted between its renames."""
    pending = folder / NEXT_INDEX
    if not pending.exists():
        return
    parts = index_parts(pending)
    if all(p.check(folder) is None for p in parts):
        os.replace(pending, folder / INDEX)
    else:
        pending.unlink()


class TokenWriter:
    """Add items to a token folder from one process (one rank).

    Items are buffered and written ``shard_size`` at a time as one data file, then
    recorded in this rank's journal; a crash loses at most the buffered items.

    Parameters
    ----------
    folder
        A folder prepared by :func:`open_folder`.
    rank
        This writer's rank; each rank has its own journal and file names.
    shard_size
        Items per data file.
    owns
        Which ids this rank is responsible for (default: all); only their files are
        verified to compute :attr:`done`.
    columns
        Parquet format: the fields that get a typed column of their own, name ->
        kind (:mod:`focalcodec.tokens.columns`; default ``speaker``, ``language``,
        ``text``, ``split`` as text). Every rank must be given the same plan; a
        folder that already has data files keeps the columns of those.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        rank: int = 0,
        shard_size: int = 256,
        owns: Any = None,
        columns: dict[str, str] | None = None,
    ) -> None:
        if shard_size < 1:
            raise InputError("shard_size must be at least 1")
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.rank = rank
        self.shard_size = shard_size
        self.dtype = np.dtype(self.meta["dtype"])
        self.done, self.damaged = completed_ids(self.folder, owns)
        self.columns = self._plan(columns)
        self.written = 0
        self._pending: list[tuple[dict[str, Any], np.ndarray]] = []
        self._number = next_part_number(self.folder, rank)

    def _plan(self, columns: dict[str, str] | None) -> dict[str, str] | None:
        """The column plan of a Parquet folder: the one its files were written
        with, else ``columns``, else the default."""
        if self.meta["format"] != "parquet":
            return None
        wanted = FILE_COLUMNS if columns is None else check_plan(columns)
        # Any of its data files will do (one plan per folder): listed, not indexed.
        names = sorted(p.name for p in self.folder.iterdir() if is_data_file(p.name))
        found = folder_columns(self.folder, names)
        return wanted if found is None else resumed_plan(wanted, found)

    def add(self, record: dict[str, Any], toks: Any) -> None:
        """Queue one item.

        Parameters
        ----------
        record
            JSON-serialisable metadata with a unique string ``id`` (and usually
            ``path``, ``duration``, ``speaker``, ...).
        toks
            Token ids, shape (L,), integers in [0, codebook_size).
        """
        item_id = record.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise InputError("each token item needs a non-empty string 'id'")
        if item_id in self.done:
            raise InputError(f"{item_id}: duplicate item id")
        toks = _check_toks(toks, self.meta["codebook_size"], item_id)
        self.done.add(item_id)
        self._pending.append((dict(record), toks.astype(self.dtype)))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the queued items as one data file, then record it in the journal."""
        if not self._pending:
            return
        fmt = self.meta["format"]
        name = data_file_name(self.rank, self._number, fmt)
        records = [r for r, _ in self._pending]
        toks = [t for _, t in self._pending]
        data = serialize(fmt, records, toks, self.dtype, self.columns)
        with atomic_write(self.folder / name) as fileobj:
            fileobj.write(data)
        self._number += 1
        items, start = [], 0
        for row, (record, t) in enumerate(self._pending):
            record.update(num_tokens=int(len(t)), start=start if fmt == "npy" else row)
            record.setdefault("path", None)
            record.setdefault("duration", None)
            items.append(record)
            start += len(t)
        line = Part(name, len(data), zlib.crc32(data), items).to_json() + "\n"
        with open(self.folder / journal_name(self.rank), "a", encoding="utf-8") as j:
            j.write(line)
            j.flush()
            os.fsync(j.fileno())
        self.written += len(self._pending)
        self._pending = []


def _check_toks(toks: Any, codebook_size: int, item_id: str) -> np.ndarray:
    if torch.is_tensor(toks):
        toks = toks.detach().cpu().numpy()
    toks = np.asarray(toks)
    if toks.ndim != 1 or not np.issubdtype(toks.dtype, np.integer):
        raise InputError(f"{item_id}: tokens must be a 1-D integer array")
    if toks.size and (toks.min() < 0 or toks.max() >= codebook_size):
        raise InputError(f"{item_id}: tokens must lie in [0, {codebook_size})")
    return toks


def _all_parts(folder: Path) -> list[Part]:
    parts = index_parts(folder / INDEX)
    for journal in journal_paths(folder):
        parts.extend(read_journal(journal))
    return parts


def completed_ids(
    folder: str | os.PathLike, owns: Any = None
) -> tuple[set[str], list[str]]:
    """Ids whose tokens are safely stored, and descriptions of damaged files.

    Every data file that holds an id accepted by ``owns`` (all ids by default) is read
    in full and its CRC32 checked; the items of a damaged file are not done (they are
    redone by the next run).
    """
    folder = Path(folder)
    done: set[str] = set()
    checks = _PartChecks(folder)
    for part in _all_parts(folder):
        ids = [i["id"] for i in part.items if owns is None or owns(i["id"])]
        if ids and checks.intact(part):
            done.update(ids)
    return done, checks.damaged


class _PartChecks:
    """Verifies each distinct data file once (several journals may name one file) and
    keeps a line for every damaged one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results: dict[tuple[str, int, int], str | None] = {}
        self.damaged: list[str] = []

    def intact(self, part: Part) -> bool:
        key = (part.name, part.size, part.crc32)
        if key not in self.results:
            self.results[key] = problem = part.check(self.folder)
            if problem:
                self.damaged.append(f"{part.name}: {problem}")
        return self.results[key] is None


@dataclass
class FinishReport:
    """What :func:`finish` did: items in the index, damaged files left out, and how
    many ids of ``order`` are not in the index."""

    items: int
    damaged: list[str]
    missing: int = 0


def finish(folder: str | os.PathLike, order: Iterable[str] = ()) -> FinishReport:
    """Merge the journals of all ranks into the index; call once every writer is done.

    Every data file is verified; items of damaged files are left out (and reported) and
    repeated ids keep their first intact copy. The index lists the ids of ``order``
    first, in that order, then the other stored items. With the npy format the tokens
    are gathered into ``tokens.npy`` / ``offsets.npy`` in index order. Data files that
    no index line refers to are deleted.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    _recover(folder)
    journals = journal_paths(folder)
    chosen: dict[str, tuple[Part, dict[str, Any]]] = {}
    checks = _PartChecks(folder)
    for part in _all_parts(folder):
        if checks.intact(part):
            for item in part.items:
                chosen.setdefault(item["id"], (part, item))
    damaged = checks.damaged
    wanted = list(dict.fromkeys(order))
    ids = [i for i in wanted if i in chosen]
    listed = set(ids)
    ids += [i for i in chosen if i not in listed]
    current = [r["id"] for r in read_jsonl(folder / INDEX)]
    if journals or damaged or ids != current:
        rows = [chosen[i] for i in ids]
        if meta["format"] == "npy":
            _gather_npy(folder, rows, np.dtype(meta["dtype"]))
        else:
            _write_index(folder / INDEX, rows, replace=True)
        for journal in journals:
            journal.unlink()
        _remove_unreferenced(folder)
    return FinishReport(len(ids), damaged, len(wanted) - len(listed))


def _index_line(part: Part, item: dict[str, Any]) -> str:
    fields = dict(zip(FILE_KEYS, (part.name, part.size, part.crc32), strict=True))
    return json.dumps({**item, **fields})


def _write_index(path: Path, rows: list, replace: bool) -> None:
    with atomic_write(path, force=replace) as fileobj:
        for part, item in rows:
            fileobj.write((_index_line(part, item) + "\n").encode())


def _gather_npy(folder: Path, rows: list, dtype: np.dtype) -> None:
    """Copy every item's tokens into one array, in index order, crash-safely.

    The new ``tokens.npy`` and the index that describes it are both written under
    temporary names and renamed tokens first; :func:`_recover` completes the second
    rename if a crash falls between the two.
    """
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([item["num_tokens"] for _, item in rows])
    tmp = folder / NEXT_TOKENS
    out = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=dtype, shape=(int(offsets[-1]),)
    )
    opened: dict[str, np.ndarray] = {}
    for k, (part, item) in enumerate(rows):
        if part.name not in opened:
            opened[part.name] = load_data(folder / part.name, "npy")
        start, n = item["start"], item["num_tokens"]
        out[offsets[k] : offsets[k + 1]] = opened[part.name][start : start + n]
    out.flush()
    del out, opened
    with open(tmp, "rb+") as fileobj:
        os.fsync(fileobj.fileno())
    merged = Part(TOKENS, tmp.stat().st_size, crc32_file(tmp))
    new_rows = [
        (merged, {**item, "start": int(offsets[k])}) for k, (_, item) in enumerate(rows)
    ]
    _write_index(folder / NEXT_INDEX, new_rows, replace=True)
    os.replace(tmp, folder / TOKENS)
    os.replace(folder / NEXT_INDEX, folder / INDEX)
    with atomic_write(folder / OFFSETS, force=True) as fileobj:
        np.save(fileobj, offsets, allow_pickle=False)


def _remove_unreferenced(folder: Path) -> None:
    used = {p.name for p in index_parts(folder / INDEX)} | {OFFSETS}
    for path in folder.iterdir():
        if is_data_file(path.name) and path.name not in used:
            if path.is_symlink() or path.is_file():  # never a folder
                path.unlink()
