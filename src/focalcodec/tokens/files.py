"""Files of a token folder: data files (npy or Parquet), journals, checksums.

The public API is :mod:`focalcodec.tokens.dataset`; this module knows bytes and file names
only. A token folder holds::

    meta.json                   model identity and storage format (written first)
    journal-r00000.jsonl        per writer rank: one line per data file it finished
    part-r00000-00000.npy       data files (npy: one flat array; parquet: one row per item)
    index.jsonl                 the finished dataset: one line per item, in source order
    tokens.npy, offsets.npy     npy format, once finished: all tokens, item boundaries

A data file is written atomically, then one journal line records its name, size, CRC32
and the items it holds (with their metadata). A data file without its journal line is
garbage; a journal line whose file does not match its size and CRC32 is damaged and its
items are redone. ``index.jsonl`` repeats the size and CRC32 of each item's file, so a
finished folder carries everything needed to check it.

A folder may have been edited by hand, so what its files say is checked before it is
used: a data file is named by a plain name of this format inside the folder (never
``../x.npy`` nor an absolute path), and every item's ``id``, ``start`` and
``num_tokens`` has the right type and range (:func:`check_item`).
"""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, InputError, TruncatedError, UsageError
from .columns import FILE_COLUMNS, metadata_arrays

__all__ = [
    "FORMATS",
    "INDEX",
    "KIND",
    "META",
    "OFFSETS",
    "TOKENS",
    "FILE_KEYS",
    "NEXT_INDEX",
    "NEXT_TOKENS",
    "Part",
    "crc32_file",
    "full_meta",
    "index_parts",
    "next_part_number",
    "read_index",
    "read_journal",
    "read_meta",
    "data_file_name",
    "check_item",
    "is_data_file",
    "is_token_folder",
    "journal_name",
    "journal_paths",
    "load_data",
    "parquet_columns",
    "parquet_rows",
    "read_jsonl",
    "serialize",
    "token_dtype",
]

KIND = "focalcodec-tokens"
VERSION = 2
FORMATS = ("npy", "parquet")
META = "meta.json"
INDEX = "index.jsonl"
TOKENS = "tokens.npy"
OFFSETS = "offsets.npy"
# The manifest fields that get their own Parquet column by default (a writer may be
# given another plan, see tokens.columns); any others go to ``extra``.
METADATA_COLUMNS = tuple(FILE_COLUMNS)
_JOURNAL = re.compile(r"journal-r(\d+)\.jsonl")
# A meta.json larger than this is not one of ours.
_MAX_META_BYTES = 1 << 20
_PART = re.compile(r"part-r(\d+)-(\d+)\.(npy|parquet)")
# Written by finish() under these names, then renamed (see tokens._recover).
NEXT_INDEX = ".index.jsonl.next"
NEXT_TOKENS = ".tokens.npy.next"
# Each index line names the data file of its item, with the file's size and CRC32.
FILE_KEYS = ("file", "file_bytes", "file_crc32")


def token_dtype(codebook_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, int32 otherwise."""
    return np.dtype(np.uint16) if codebook_size <= 2**16 else np.dtype(np.int32)


def journal_name(rank: int) -> str:
    return f"journal-r{rank:05d}.jsonl"


def journal_paths(folder: Path) -> list[Path]:
    """Rank journals in the folder, by rank."""
    found = [p for p in folder.iterdir() if _JOURNAL.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_JOURNAL.fullmatch(p.name).group(1)))


def data_file_name(rank: int, number: int, fmt: str) -> str:
    return f"part-r{rank:05d}-{number:05d}.{fmt}"


def is_data_file(name: str) -> bool:
    """True for the names this package gives data files (parts and merged arrays)."""
    return bool(_PART.fullmatch(name)) or name in (TOKENS, OFFSETS)


def is_token_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a ``meta.json`` that this package wrote (this format's
    ``kind``, or the ``format`` marker of focalcodec 0.1)."""
    path = Path(folder) / META
    if not path.is_file() or path.stat().st_size > _MAX_META_BYTES:
        return False
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and KIND in (meta.get("kind"), meta.get("format"))


def _check_name(name: Any, where: str) -> str:
    """A data file's name from a journal or index: a plain name of ours, inside the
    folder."""
    if not isinstance(name, str) or not is_data_file(name) or name == OFFSETS:
        raise FormatError(
            f"{where}: data file {name!r:.80} is not a file of this token folder "
            "(only its own part-*.npy/parquet and tokens.npy are read)"
        )
    return name


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_item(item: Any, where: str) -> dict[str, Any]:
    """An item record of a journal or index, checked: a non-empty string ``id``, and
    whole numbers ``num_tokens`` and ``start`` (>= 0). Raises FormatError."""
    if not isinstance(item, dict):
        raise FormatError(f"{where}: an item is not a JSON object")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise FormatError(f"{where}: an item has no string id")
    for key in ("num_tokens", "start"):
        if not _whole(item.get(key)):
            raise FormatError(
                f"{where}: item {item['id']!r:.80} has {key}={item.get(key)!r:.40}; "
                "it must be a whole number >= 0"
            )
    return item


def next_part_number(folder: Path, rank: int) -> int:
    numbers = [
        int(m.group(2))
        for p in folder.iterdir()
        if (m := _PART.fullmatch(p.name)) and int(m.group(1)) == rank
    ]
    return max(numbers, default=-1) + 1


def crc32_file(path: Path, chunk: int = 1 << 20) -> int:
    """CRC32 of a whole file, read in chunks (bounded memory)."""
    crc = 0
    with open(path, "rb") as fileobj:
        while block := fileobj.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


@dataclass
class Part:
    """One data file and the items it holds, as recorded in a journal or the index.

    Attributes
    ----------
    name
        File name inside the folder.
    size, crc32
        Byte size and CRC32 of the file when it was written.
    items
        Item records (id, path, num_tokens, duration, metadata), in file order.
    """

    name: str
    size: int
    crc32: int
    items: list[dict[str, Any]] = field(default_factory=list)

    def check(self, folder: Path, full: bool = True) -> str | None:
        """None when the file is intact, else what is wrong with it."""
        path = folder / self.name
        if not path.is_file():
            return "missing"
        size = path.stat().st_size
        if size != self.size:
            return f"{size} bytes, expected {self.size} (truncated or overwritten)"
        if full and crc32_file(path) != self.crc32:
            return "checksum mismatch (corrupted)"
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "file": self.name,
                "bytes": self.size,
                "crc32": self.crc32,
                "items": self.items,
            }
        )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Objects of a JSONL file; a torn last line (crash during an append) is dropped."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not a text file ({exc})") from None
    lines = text.split("\n")
    if lines and lines[-1]:
        lines = lines[:-1]
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: corrupted line ({exc.msg})") from None
        if not isinstance(value, dict):
            raise FormatError(f"{path}:{lineno}: expected a JSON object")
        out.append(value)
    return out


def read_journal(path: Path) -> list[Part]:
    parts = []
    for entry in read_jsonl(path):
        try:
            name = entry["file"]
            part = Part(name, int(entry["bytes"]), int(entry["crc32"]), entry["items"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: malformed journal entry") from None
        _check_name(name, str(path))
        if not isinstance(part.items, list):
            raise FormatError(f"{path}: malformed journal entry")
        for item in part.items:
            check_item(item, str(path))
        parts.append(part)
    return parts


def serialize(
    fmt: str,
    records: list[dict[str, Any]],
    toks: list[np.ndarray],
    dtype: np.dtype,
    columns: dict[str, str] | None = None,
) -> bytes:
    """Bytes of one data file holding ``toks`` (each (L_i,)) for ``records``;
    ``columns`` is the Parquet column plan (:mod:`focalcodec.tokens.columns`)."""
    if fmt == "npy":
        flat = np.concatenate([t.astype(dtype) for t in toks]) if toks else []
        buf = io.BytesIO()
        np.save(buf, np.asarray(flat, dtype=dtype), allow_pickle=False)
        return buf.getvalue()
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise need_pyarrow() from None

    table = pa.table(parquet_columns(records, toks, dtype, columns))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def need_pyarrow() -> UsageError:
    return UsageError(
        "the parquet token format needs pyarrow: pip install 'focalcodec[tokens]'"
    )


def parquet_columns(
    records: list[dict[str, Any]],
    toks: list[np.ndarray],
    dtype: np.dtype,
    columns: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Column name -> pyarrow array: the folder's own columns, one per entry of the
    plan ``columns`` (default :data:`~focalcodec.tokens.columns.FILE_COLUMNS`), and
    ``extra``; the same plan gives the same schema in every file."""
    import pyarrow as pa

    value_type = pa.uint16() if dtype == np.uint16 else pa.int32()

    def text(key: str) -> Any:
        values = [r.get(key) for r in records]
        return pa.array([None if v is None else str(v) for v in values], pa.string())

    planned, extra = metadata_arrays(
        records, FILE_COLUMNS if columns is None else columns
    )
    return {
        "id": text("id"),
        "path": text("path"),
        "tokens": pa.array([t.astype(dtype) for t in toks], pa.list_(value_type)),
        "num_tokens": pa.array([len(t) for t in toks], pa.int64()),
        "duration": pa.array([r.get("duration") for r in records], pa.float64()),
        **planned,
        "extra": extra,
    }


def load_data(path: Path, fmt: str) -> Any:
    """Open a data file for reading tokens: a memory-mapped array (npy) or a list of
    token arrays, one per row (parquet). Unreadable files raise FormatError."""
    try:
        if fmt == "npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.ndim != 1:
                raise ValueError(f"expected a 1-D array, got shape {array.shape}")
            return array
        import pyarrow.parquet as pq

        column = pq.read_table(path, columns=["tokens"]).column("tokens")
        return column.combine_chunks()
    except FileNotFoundError:
        raise TruncatedError(f"{path}: data file is missing") from None
    except ImportError:
        raise need_pyarrow() from None
    except Exception as exc:
        raise FormatError(f"{path}: unreadable token file ({exc})") from None


def parquet_rows(path: Path, dtype: np.dtype) -> int:
    """Rows of a Parquet data file, read from its footer only, after checking that its
    columns have the types this package writes (``id`` text, ``num_tokens`` int64,
    ``tokens`` lists of ``dtype``). Raises FormatError."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        rows = pq.read_metadata(path).num_rows
    except ImportError:
        raise need_pyarrow() from None
    except FileNotFoundError:
        raise TruncatedError(f"{path}: data file is missing") from None
    except Exception as exc:
        raise FormatError(f"{path}: unreadable token file ({exc})") from None
    value = pa.uint16() if dtype == np.uint16 else pa.int32()
    wanted = {"id": pa.string(), "num_tokens": pa.int64(), "tokens": pa.list_(value)}
    for name, kind in wanted.items():
        index = schema.get_field_index(name)
        if index < 0 or schema.field(index).type != kind:
            got = schema.field(index).type if index >= 0 else "no such column"
            raise FormatError(f"{path}: column {name!r} must be {kind}, got {got}")
    return rows


def full_meta(meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise InputError(f"token format {fmt!r}: choose one of {', '.join(FORMATS)}")
    meta = dict(meta)
    bits, size = meta.get("bits_per_token"), meta.get("codebook_size")
    if size is None and bits is None:
        raise InputError("token meta needs codebook_size or bits_per_token")
    size = int(size) if size is not None else 2 ** int(bits)
    if size < 2:
        raise InputError(f"codebook_size must be at least 2, got {size}")
    if bits is None:
        bits = (size - 1).bit_length()
    full = {"kind": KIND, "version": VERSION, "format": fmt}
    for key in ("model_name", "config_hash", "token_rate", "sample_rate"):
        full[key] = meta.pop(key, None)
    full.update(codebook_size=size, bits_per_token=int(bits))
    full["dtype"] = token_dtype(size).name
    meta.pop("codebook_size", None), meta.pop("bits_per_token", None)
    return {**full, **meta}


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a token folder; FormatError when absent or not ours."""
    path = Path(folder) / META
    if not Path(folder).is_dir():
        raise FormatError(f"{folder}: no such token folder")
    if not path.is_file():
        old = any(Path(folder).glob("shard-*.safetensors"))
        hint = (
            "it holds tokens from an older focalcodec; run tokenize again with --force"
            if old
            else "not a token folder"
        )
        raise FormatError(f"{folder}: {META} is missing ({hint})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise FormatError(
            f"{path}: not a focalcodec token folder of this version (run tokenize "
            "again with --force to rebuild it)"
        )
    if meta.get("version") != VERSION or meta.get("format") not in FORMATS:
        raise FormatError(f"{path}: unsupported version or format")
    size, bits = meta.get("codebook_size"), meta.get("bits_per_token")
    if not (_whole(size) and _whole(bits) and 2 <= size <= 2**bits <= 2**32):
        raise FormatError(
            f"{path}: codebook_size {size!r:.40} and bits_per_token {bits!r:.40} are "
            "not a codebook (2 <= codebook_size <= 2**bits_per_token <= 2**32)"
        )
    if meta.get("dtype") != token_dtype(size).name:
        raise FormatError(
            f"{path}: dtype {meta.get('dtype')!r:.40} is not the one of a "
            f"{size}-token codebook ({token_dtype(size).name})"
        )
    return meta


def read_index(path: Path) -> list[tuple[Part, dict[str, Any]]]:
    """Lines of an index as (data file, item record), in index order."""
    parts: dict[tuple, Part] = {}
    rows = []
    for lineno, record in enumerate(read_jsonl(path), 1):
        try:
            key = tuple(record.pop(k) for k in FILE_KEYS)
            hash(key)
            part = parts.setdefault(key, Part(key[0], int(key[1]), int(key[2])))
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: an item lacks valid file fields") from None
        _check_name(key[0], f"{path}:{lineno}")
        check_item(record, f"{path}:{lineno}")
        part.items.append(record)
        rows.append((part, record))
    return rows


def index_parts(path: Path) -> list[Part]:
    """The data files of an index, each with its items."""
    return list({id(p): p for p, _ in read_index(path)}.values())
