"""Hugging Face datasets as token sources: Parquet files, ``save_to_disk`` folders, the Hub.

Local Parquet and Arrow files are read with pyarrow, record batch by record batch (one
file is one shard); a Hub id goes through ``datasets.load_dataset(..., streaming=True)``
and its shards (``IterableDataset.shard``). The audio column is the one whose feature is
``Audio`` (its ``bytes``, or the file at its ``path``), a struct with ``array`` and
``sampling_rate``, or the one named by ``audio_column``; the id is ``id_column``, else a
column called ``id``, else ``<shard>:<row>``. Every other scalar column is metadata, and
the split (from the file names, as ``datasets`` infers it) is stored as ``split``.

Needs ``pip install 'focalcodec[hf]'`` (pyarrow; ``datasets`` for the Hub and splits).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError, UsageError
from .base import Item, Shard, Source, expand_spec, scalar_meta, stored_key

__all__ = [
    "ArrowSource",
    "HubSource",
    "ParquetSource",
    "audio_value",
    "find_audio_column",
    "raw_audio",
]

ROWS_PER_READ = 32  # rows turned into Python objects at a time (bounded memory)


def _need(module: str) -> UsageError:
    return UsageError(
        f"reading Hugging Face datasets needs {module}: pip install 'focalcodec[hf]'"
    )


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _need("pyarrow") from None
    return pa, pq


def hf_features(schema: Any) -> dict[str, Any]:
    """The ``datasets`` features stored in an Arrow schema's metadata (or {})."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        return json.loads(raw)["info"]["features"] if raw else {}
    except (ValueError, KeyError, TypeError):
        return {}


def find_audio_column(
    columns: dict[str, Any], features: dict[str, Any], wanted: str | None, where: str
) -> str:
    """The audio column: ``wanted``, an ``Audio`` feature, or an audio-like struct.

    ``columns`` maps column names to Arrow types (or None where unknown).
    """
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"{where}: no column {wanted!r} (columns: {', '.join(columns)})"
            )
        return wanted
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "Audio":
            if name in columns:
                return name
    for name, kind in columns.items():
        fields = (
            {kind.field(i).name for i in range(kind.num_fields)}
            if _is_struct(kind)
            else set()
        )
        if {"bytes", "path"} <= fields or {"array", "sampling_rate"} <= fields:
            return name
    raise DataError(
        f"{where}: no audio column found (columns: {', '.join(columns)}); name it "
        "with --audio-column"
    )


def _is_struct(kind: Any) -> bool:
    return (
        kind is not None
        and getattr(kind, "num_fields", 0) > 0
        and hasattr(kind, "field")
    )


def audio_value(value: Any, base: Path | None = None) -> Any:
    """An Audio cell as an :class:`~focalcodec.pipeline.sources.base.Item` audio:
    its bytes, its file (a relative path is looked up next to ``base`` first), or
    ``(array, rate)``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(
                value["sampling_rate"]
            )
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        path = Path(value)
        if not path.is_absolute() and base is not None and (base / path).exists():
            return base / path
        return path
    raise DataError("the audio cell holds neither bytes, a path nor an array")


def _declared(types: dict[str, Any], skip: tuple, split: bool) -> dict[str, str] | None:
    """Stored name -> column kind of the scalar columns of a schema (``types``: name
    -> Arrow type), minus ``skip``; ``split`` as text where the source names splits."""
    from ...tokens.columns import arrow_kind

    declared = {
        stored_key(name): kind
        for name, kind_type in types.items()
        if name not in skip and (kind := arrow_kind(kind_type)) is not None
    }
    if split:
        declared.setdefault("split", "string")
    return declared


def _row_item(row: dict, shard: Shard, k: int, columns: tuple, base: Path | None):
    audio_column, id_column, split = columns
    key = row.get(id_column) if id_column else None
    item_id = str(key) if key is not None else f"{shard.name}:{k}"
    meta = scalar_meta(row, skip=(audio_column, id_column))
    if split is not None:
        meta.setdefault("split", split)
    item = Item(item_id, shard.name, k, None, meta, path=shard.path)
    try:
        item.audio = audio_value(row.get(audio_column), base)
    except DataError as exc:
        # Reported for this item when it is decoded; the shard goes on.
        item.audio = DataError(f"{item.name}: {exc}")
    return item


class _ArrowFiles(Source):
    """Shared reading of local Arrow data: one file per shard, rows in order."""

    def __init__(
        self,
        spec: str,
        files: list[tuple[Path, str | None]],
        root: Path,
        audio_column: str | None = None,
        id_column: str | None = None,
    ) -> None:
        super().__init__(spec)
        if not files:
            raise DataError(f"{spec}: no data files found")
        self.files = files
        self.root = root
        self.audio_column = audio_column
        self.id_column = id_column

    def shards(self) -> list[Shard]:
        out = []
        for k, (path, split) in enumerate(self.files):
            try:
                name = path.relative_to(self.root).as_posix()
            except ValueError:
                name = path.name
            out.append(Shard(k, name, str(path), split, self._count(path)))
        return out

    def _count(self, path: Path) -> int | None:
        return None

    def _batches(self, path: Path) -> tuple[Any, Iterator[Any]]:
        raise NotImplementedError

    def _columns(self, types: dict[str, Any], features: dict, where: str) -> tuple:
        audio = find_audio_column(types, features, self.audio_column, where)
        id_column = self.id_column or ("id" if "id" in types else None)
        if id_column is not None and id_column not in types:
            raise DataError(f"{where}: no id column {id_column!r}")
        return audio, id_column

    def column_types(self) -> dict[str, str] | None:
        """The kinds of the first file's scalar columns (the files of a dataset share
        one schema; a later file's value that does not fit goes to ``extra``)."""
        path = self.files[0][0]
        try:
            schema, _ = self._batches(path)
            types = {f.name: f.type for f in schema}
            skip = self._columns(types, hf_features(schema), path.name)
        except Exception:
            return None  # decided from the items that can be read; errors come then
        return _declared(types, skip, any(s is not None for _, s in self.files))

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        path = Path(shard.path)
        schema, batches = self._batches(path)
        types = {f.name: f.type for f in schema}
        audio, id_column = self._columns(types, hf_features(schema), shard.name)
        columns = (audio, id_column, shard.part)
        k = 0
        for batch in batches:
            for start in range(0, batch.num_rows, ROWS_PER_READ):
                for row in batch.slice(start, ROWS_PER_READ).to_pylist():
                    yield _row_item(row, shard, k, columns, path.parent)
                    k += 1


class ParquetSource(_ArrowFiles):
    """Parquet files (a file, a folder of them, a glob): ``datasets``' Parquet layout."""

    kind = "parquet"

    @classmethod
    def open(
        cls, spec: str, *, split: str | None = None, **columns: Any
    ) -> ParquetSource:
        path = Path(spec)
        if path.is_dir():
            files = _split_files(path, split)
            return cls(spec, files, path, **columns)
        found = [Path(p) for p in expand_spec(spec)]
        missing = [p for p in found if not p.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: no such Parquet file")
        root = Path(_common_root(found))
        return cls(spec, [(p, split) for p in found], root, **columns)

    def _count(self, path: Path) -> int | None:
        _, pq = _pyarrow()
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:
            return None  # reported when the shard is read

    def _batches(self, path: Path) -> tuple[Any, Iterator[Any]]:
        _, pq = _pyarrow()
        parquet = pq.ParquetFile(path)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=ROWS_PER_READ)


class ArrowSource(_ArrowFiles):
    """A ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` folder (Arrow files)."""

    kind = "arrow"

    @classmethod
    def open(
        cls, spec: str, *, split: str | None = None, **columns: Any
    ) -> ArrowSource:
        root = Path(spec)
        splits_file = root / "dataset_dict.json"
        if splits_file.is_file():
            splits = json.loads(splits_file.read_text(encoding="utf-8"))["splits"]
            if split is not None and split not in splits:
                raise DataError(
                    f"{spec}: no split {split!r} (splits: {', '.join(splits)})"
                )
            chosen = [split] if split is not None else splits
            files = [(p, s) for s in chosen for p in _state_files(root / s)]
        else:
            files = [(p, split) for p in _state_files(root)]
        return cls(spec, files, root, **columns)

    def _batches(self, path: Path) -> tuple[Any, Iterator[Any]]:
        pa, _ = _pyarrow()
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
        return reader.schema, iter(reader)


def _state_files(folder: Path) -> list[Path]:
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        return [folder / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{folder}: not a save_to_disk folder ({exc})") from None


def _common_root(paths: list[Path]) -> str:
    if len(paths) == 1:
        return str(paths[0].parent)
    return os.path.commonpath([str(p.parent) for p in paths])


def _split_files(root: Path, split: str | None) -> list[tuple[Path, str | None]]:
    """Parquet files under ``root`` with their split, named as ``datasets`` names them
    (``train-00000-of-00004.parquet``, ``test/...``); one split when none is named."""
    everything = sorted(p for p in root.rglob("*.parquet") if not _hidden(p, root))
    try:
        from datasets.data_files import DataFilesDict, get_data_patterns
    except ImportError:
        if split is not None:
            raise _need("datasets (to pick a split)") from None
        return [(p, None) for p in everything]
    try:
        patterns = get_data_patterns(str(root))
        resolved = DataFilesDict.from_patterns(patterns, base_path=str(root))
    except Exception:
        resolved = {}
    by_split = {
        str(name): [Path(f) for f in files if str(f).endswith(".parquet")]
        for name, files in resolved.items()
    }
    by_split = {k: v for k, v in by_split.items() if v}
    if not by_split:
        by_split = {"train": everything}
    if split is not None and split not in by_split:
        # A folder named like the split (the Hub's ``clean/train.100/``), which
        # ``datasets`` would fold into ``train``.
        named = [p for p in everything if split in p.relative_to(root).parts[:-1]]
        if not named:
            raise DataError(
                f"{root}: no split {split!r} (splits: {', '.join(by_split)})"
            )
        by_split = {split: named}
    elif split is not None:
        by_split = {split: by_split[split]}
    return [(p, name) for name, files in by_split.items() for p in sorted(files)]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def raw_audio(ds: Any, column: str) -> Any:
    """``ds`` with its ``Audio`` column left undecoded (bytes and path), which is
    what :func:`audio_value` reads; other columns are returned as they are."""
    from datasets import Audio

    feature = (ds.features or {}).get(column)
    if isinstance(feature, Audio) and feature.decode:
        return ds.cast_column(column, Audio(decode=False))
    return ds


class HubSource(Source):
    """A dataset read through ``datasets.load_dataset(..., streaming=True)``.

    ``spec`` is a Hub id (``owner/name``, ``owner/name:config``) or a builder such as
    ``parquet`` with ``data_files``; each split's shards are the shards of the
    streaming dataset.
    """

    kind = "hub"

    def __init__(
        self,
        spec: str,
        *,
        split: str | None = None,
        data_files: Any = None,
        audio_column: str | None = None,
        id_column: str | None = None,
    ) -> None:
        super().__init__(spec)
        path, _, config = (
            spec.removeprefix("hf://").removeprefix("datasets/").partition(":")
        )
        self.args = {"path": path, "name": config or None, "data_files": data_files}
        self.split = split
        self.audio_column = audio_column
        self.id_column = id_column
        self._cache: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}

    def _load(self, split: str | None) -> Any:
        key = str(split)
        if key not in self._cache:
            try:
                from datasets import load_dataset
            except ImportError:
                raise _need("datasets") from None
            self._cache[key] = load_dataset(**self.args, split=split, streaming=True)
        return self._cache[key]

    def shards(self) -> list[Shard]:
        loaded = self._load(self.split)
        splits = {self.split: loaded} if self.split else dict(loaded)
        out: list[Shard] = []
        for name, ds in splits.items():
            n = int(ds.num_shards)
            for k in range(n):
                out.append(
                    Shard(
                        len(out), f"{name}/{k:05d}-of-{n:05d}", self.spec, (name, k, n)
                    )
                )
        return out

    def _columns(self, features: Any, where: str) -> tuple[str, str | None]:
        types = {name: None for name in features}
        kinds = {
            name: {"_type": getattr(f, "_type", type(f).__name__)}
            for name, f in features.items()
        }
        audio = find_audio_column(types, kinds, self.audio_column, where)
        return audio, self.id_column or ("id" if "id" in features else None)

    def column_types(self) -> dict[str, str] | None:
        """The kinds of the scalar features of the first shard's split (None where
        the dataset does not declare its features)."""
        try:
            split = self.shards()[0].part[0]
            features = self._load(split).features
            if not features:
                return None
            skip = self._columns(features, self.spec)
            types = {f.name: f.type for f in features.arrow_schema}
        except Exception:
            return None
        return _declared(types, skip, True)

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        split, k, n = shard.part
        ds = self._load(split)
        features = ds.features or {}
        audio, id_column = self._columns(features, shard.name)
        ds = raw_audio(ds, audio).shard(num_shards=n, index=k)
        for row_k, row in enumerate(ds):
            yield _row_item(row, shard, row_k, (audio, id_column, split), None)
