"""Token folders: written resumably by one or many processes, read as a dataset.

A token folder is what ``focalcodec tokenize`` (or :func:`write_tokens`) produces: the
tokens of many audio files with their metadata, in one of two formats:

- ``npy``: ``tokens.npy`` holds every item's tokens back to back (uint16, or int32 for
  codebooks above 2**16) and ``offsets.npy`` (N + 1,) where item ``i`` spans
  ``tokens[offsets[i]:offsets[i + 1]]``; both memory-map with ``np.load(...,
  mmap_mode="r")``.
- ``parquet``: ``part-*.parquet`` files with columns ``id``, ``path``, ``tokens``,
  ``num_tokens``, ``duration``, one typed column per planned field (from files:
  ``speaker``, ``language``, ``text``, ``split``; from a corpus source: its scalar
  columns, see :mod:`focalcodec.tokens.columns`) and ``extra`` (the other fields, as
  JSON), for pyarrow, pandas or
  ``datasets.load_dataset("parquet", data_files="OUT/*.parquet")``.

Both carry ``meta.json`` (model identity) and ``index.jsonl`` (one line per item, in
source order). Reading back::

    ds = TokenDataset("out/")
    ds[0]["tokens"], ds[0]["speaker"], ds.meta["codebook_size"]
    loader = DataLoader(ds, batch_size=16, collate_fn=pack_collate(1024, 4096))

Writing: :func:`open_folder` (one process) creates or checks ``meta.json``; then any
number of :class:`TokenWriter` (one per rank) add items, each writing data files and a
journal of its own; :func:`finish` (one process, after all writers) verifies every
file, drops duplicates and damaged files and writes the index. See
:mod:`focalcodec.tokens.files` for the on-disk details.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import FormatError, InputError, ModelMismatchError
from .files import (
    INDEX,
    OFFSETS,
    TOKENS,
    journal_paths,
    load_data,
    parquet_rows,
    read_index,
    read_meta,
)
from .writer import (
    FinishReport,
    TokenWriter,
    completed_ids,
    finish,
    open_folder,
    owner_rank,
    token_meta,
)

__all__ = [
    "FinishReport",
    "PackCollate",
    "TokenDataset",
    "TokenWriter",
    "completed_ids",
    "finish",
    "open_folder",
    "owner_rank",
    "pack_collate",
    "read_meta",
    "token_meta",
    "write_tokens",
]


def write_tokens(
    folder: str | os.PathLike,
    items: Iterable[dict[str, Any]],
    meta: dict[str, Any] | Any,
    *,
    fmt: str = "npy",
    shard_size: int = 256,
    force: bool = False,
    columns: dict[str, str] | None = None,
) -> TokenDataset:
    """Write a token folder from Python (the same files as ``focalcodec tokenize``).

    Parameters
    ----------
    folder
        Output folder.
    items
        Dicts with ``id`` (unique string), ``tokens`` (shape (L,), integers) and any
        metadata (``path``, ``duration``, ``speaker``, ``language``, ``text``,
        ``split``, ...).
    meta
        A codec (its identity is recorded) or a dict with at least ``codebook_size``.
    fmt
        ``npy`` or ``parquet``.
    shard_size
        Items per data file.
    force
        Replace an existing token folder's files.
    columns
        Parquet: the fields with a typed column of their own, name -> kind (see
        :mod:`focalcodec.tokens.columns`); the others go to ``extra``.

    Returns
    -------
        The written folder as a :class:`TokenDataset`. Items already present (a resumed
        write) are kept, not rewritten.
    """
    if not isinstance(meta, dict):
        meta = token_meta(meta)
    open_folder(folder, meta, fmt=fmt, force=force)
    writer = TokenWriter(folder, shard_size=shard_size, columns=columns)
    order: dict[str, None] = {}
    for item in items:
        record = dict(item)
        toks = record.pop("tokens")
        item_id = record.get("id")
        if item_id in order:
            raise InputError(f"{item_id}: duplicate item id")
        order[item_id] = None
        if item_id not in writer.done:
            writer.add(record, toks)
    writer.flush()
    finish(folder, order)
    return TokenDataset(folder)


class TokenDataset(Dataset):
    """Map-style dataset over a finished token folder.

    ``ds[i]`` is a dict with ``id``, ``path``, ``tokens`` (shape (L,), int64),
    ``num_tokens``, ``duration`` and the manifest metadata (``speaker``, ``language``,
    ``text``, ``split``, ...). Data files are opened lazily in each DataLoader worker.

    Parameters
    ----------
    folder
        Output folder of ``focalcodec tokenize`` or :func:`write_tokens`.
    verify
        Check every data file's CRC32 and every token id on opening (reads
        everything). Always checked on opening: sizes, names (only files inside the
        folder), item fields, that every item lies inside its data file, the data
        types, and ``offsets.npy`` (from 0, non-decreasing, matching the index); token
        ids are checked against the codebook as each item is read.
    split
        Keep only items whose ``split`` field equals this.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        verify: bool = False,
        split: str | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        pending = journal_paths(self.folder)
        if pending:
            raise FormatError(
                f"{self.folder}: tokenization is not finished ({len(pending)} journal(s) "
                "not merged); run the same tokenize command again to finish it"
            )
        if not (self.folder / INDEX).exists():
            raise FormatError(f"{self.folder}: {INDEX} is missing")
        rows = read_index(self.folder / INDEX)
        self._files: OrderedDict[str, Any] = OrderedDict()
        for part in {id(p): p for p, _ in rows}.values():
            problem = part.check(self.folder, full=verify)
            if problem:
                raise FormatError(f"{self.folder / part.name}: {problem}")
            self._check_part(part, verify)
        self._check_offsets(rows)
        self.items = [{**item, "file": part.name} for part, item in rows]
        if split is not None:
            self.items = [r for r in self.items if r.get("split") == split]

    def _check_part(self, part: Any, verify: bool) -> None:
        """Every item of a data file lies inside it, with the folder's data type."""
        path = self.folder / part.name
        if self.meta["format"] == "npy":
            data = load_data(path, "npy")
            if data.dtype != np.dtype(self.meta["dtype"]):
                raise FormatError(
                    f"{path}: holds {data.dtype} tokens, the folder's are "
                    f"{self.meta['dtype']}"
                )
            size = len(data)
            ends = [int(i["start"]) + int(i["num_tokens"]) for i in part.items]
        else:
            size = parquet_rows(path, np.dtype(self.meta["dtype"]))
            ends = [int(i["start"]) + 1 for i in part.items]
        if ends and max(ends) > size:
            raise FormatError(
                f"{path}: the index places items up to {max(ends)}, beyond its "
                f"{size} {'tokens' if self.meta['format'] == 'npy' else 'rows'}"
            )
        if verify:
            self._check_values(path, load_data(path, self.meta["format"]))

    def _check_values(self, path: Path, data: Any) -> None:
        """Every token id of a data file within the codebook (read in pieces)."""
        size = int(self.meta["codebook_size"])
        if self.meta["format"] == "npy":
            pieces = (data[i : i + (1 << 22)] for i in range(0, len(data), 1 << 22))
        else:
            pieces = (np.asarray(data.values) for _ in [0])
        for piece in pieces:
            if len(piece) and (piece.min() < 0 or piece.max() >= size):
                raise FormatError(f"{path}: holds token ids outside [0, {size})")

    def _check_offsets(self, rows: list) -> None:
        """``offsets.npy`` of a finished npy folder: 0, non-decreasing, the index's."""
        path = self.folder / OFFSETS
        if self.meta["format"] != "npy" or not path.is_file():
            return
        try:
            offsets = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise FormatError(f"{path}: unreadable ({exc})") from None
        merged = [item for part, item in rows if part.name == TOKENS]
        starts = [int(i["start"]) for i in merged]
        ends = [int(i["start"]) + int(i["num_tokens"]) for i in merged]
        good = (
            offsets.ndim == 1
            and np.issubdtype(offsets.dtype, np.integer)
            and len(offsets) == len(merged) + 1
            and offsets[0] == 0
            and bool((np.diff(offsets) >= 0).all())
            and offsets[:-1].tolist() == starts
            and offsets[1:].tolist() == ends
        )
        if not good:
            raise FormatError(
                f"{path}: does not match {INDEX} (item boundaries must start at 0, "
                "never decrease and equal each item's start and end)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.items[index]
        item = {k: v for k, v in record.items() if k not in ("file", "start")}
        item["tokens"] = self._tokens(record)
        return item

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.items]

    @property
    def num_tokens(self) -> int:
        """Total tokens over all items."""
        return sum(int(r["num_tokens"]) for r in self.items)

    def _tokens(self, record: dict[str, Any]) -> np.ndarray:
        data = self._open(record["file"])
        start, n = int(record["start"]), int(record["num_tokens"])
        if self.meta["format"] == "npy":
            if start + n > len(data):
                raise FormatError(f"{record['file']}: shorter than its index says")
            toks = np.array(data[start : start + n], dtype=np.int64)
        else:
            if start >= len(data):
                raise FormatError(f"{record['file']}: has no row {start}")
            toks = data[start].values.to_numpy(zero_copy_only=False).astype(np.int64)
            if len(toks) != n:
                raise FormatError(
                    f"{record['file']}: row {start} does not match the index"
                )
        size = int(self.meta["codebook_size"])
        if len(toks) and (toks.min() < 0 or toks.max() >= size):
            raise FormatError(
                f"{self.folder / record['file']}: item {record['id']!r} holds token "
                f"ids outside the codebook [0, {size})"
            )
        return toks

    def _open(self, name: str) -> Any:
        if name not in self._files:
            self._files[name] = load_data(self.folder / name, self.meta["format"])
            while len(self._files) > 8:
                self._files.popitem(last=False)
        self._files.move_to_end(name)
        return self._files[name]

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps and Arrow buffers are reopened in each worker, not pickled.
        state = dict(self.__dict__)
        state["_files"] = OrderedDict()
        return state

    def decode(self, index: int, codec: Any) -> torch.Tensor:
        """Audio of item ``index`` through ``codec`` (the model that made the tokens).

        Returns
        -------
            Waveform, shape (N,), at ``codec.sample_rate_output``.
        """
        mine = token_meta(codec)
        for key, what in (("config_hash", "config"), ("weights_hash", "weights")):
            if self.meta.get(key) not in (None, mine[key]) and mine[key] is not None:
                raise ModelMismatchError(
                    f"{self.folder}: tokens of {what} {self.meta[key]}, but the codec "
                    f"has {what} {mine[key]}; decode them with the model that made them"
                )
        toks = torch.from_numpy(self[index]["tokens"])[None]
        device = codec.device
        with torch.inference_mode():
            return codec.toks_to_sig(toks.to(device))[0].cpu()


@dataclass(frozen=True)
class PackCollate:
    """Concatenate items with a separator between them and cut fixed-length blocks.

    Attributes
    ----------
    block_size
        Tokens per block (row).
    separator
        Id placed between consecutive items (typically ``codebook_size``).
    pad
        Id that fills the last block (default: ``separator``).
    drop_last
        Drop the last block instead of padding it.
    """

    block_size: int
    separator: int
    pad: int | None = None
    drop_last: bool = False

    def __call__(self, items: list[Any]) -> torch.Tensor:
        """Items (dicts with ``tokens``, or arrays) -> LongTensor (B, block_size)."""
        pieces: list[np.ndarray] = []
        for k, item in enumerate(items):
            toks = item["tokens"] if isinstance(item, dict) else item
            if k:
                pieces.append(np.array([self.separator], dtype=np.int64))
            pieces.append(np.asarray(toks, dtype=np.int64))
        flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        size = self.block_size
        if self.drop_last:
            flat = flat[: len(flat) // size * size]
        else:
            fill = self.separator if self.pad is None else self.pad
            flat = np.concatenate([flat, np.full(-len(flat) % size, fill, np.int64)])
        return torch.from_numpy(flat).view(-1, size)


def pack_collate(
    block_size: int, separator: int, *, pad: int | None = None, drop_last: bool = False
) -> PackCollate:
    """A DataLoader ``collate_fn`` for LM training; see :class:`PackCollate`."""
    if block_size < 1:
        raise InputError(f"block_size must be at least 1, got {block_size}")
    return PackCollate(block_size, separator, pad, drop_last)
