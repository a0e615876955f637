"""Corpora where they live: Hugging Face datasets, WebDataset shards, Lhotse manifests.

:func:`open_source` turns what a user names (a path, a glob, a brace pattern, a Hub
id) into a :class:`~focalcodec.pipeline.sources.base.Source`, whose shards
:func:`tokenize_source` splits over ranks (shard ``i`` to rank ``i % world_size``);
:func:`tokenize_dataset` maps a ``datasets`` dataset to one with a ``tokens`` column.
An audio folder or a JSONL manifest of files (kind ``files``) stays with
:func:`focalcodec.files.manifest.scan` and
:func:`focalcodec.pipeline.tokenize.tokenize_entries`.

=========  ===============================================================
kind       what is recognised
=========  ===============================================================
parquet    a ``.parquet`` file, a glob of them, a folder holding them
arrow      a ``save_to_disk`` folder (``state.json`` or ``dataset_dict.json``)
hub        a Hub id ``owner/name`` (or ``owner/name:config``), streamed
wds        a ``.tar`` file, a glob or brace pattern of them, a folder of them
lhotse     a Lhotse manifest (``cuts.jsonl.gz``, recordings + supervisions)
shar       a Lhotse Shar folder (``cuts.000000.jsonl.gz`` + ``recording.*.tar``)
files      an audio folder or a JSONL manifest of audio files
=========  ===============================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import DataError, UsageError
from ...files.audio import AUDIO_SUFFIXES
from .base import Item, Shard, ShardFailure, Source, expand_spec, is_pattern
from .engine import tokenize_source
from .lhotse import manifest_kind, shar_cut_files
from .mapper import tokenize_dataset, tokens_mapper

__all__ = [
    "KINDS",
    "Item",
    "Shard",
    "ShardFailure",
    "Source",
    "detect_kind",
    "open_source",
    "tokenize_dataset",
    "tokenize_source",
    "tokens_mapper",
]

KINDS = ("files", "parquet", "arrow", "hub", "wds", "lhotse", "shar")
_TAR = (".tar", ".tar.gz", ".tgz")
_HUB_ID = re.compile(r"(hf://(datasets/)?)?[\w.-]+/[\w.-]+(:[\w.-]+)?")
# Which options each kind understands.
_OPTIONS = {
    "parquet": {"audio_column", "id_column", "split"},
    "arrow": {"audio_column", "id_column", "split"},
    "hub": {"audio_column", "id_column", "split"},
    "wds": {"audio_column", "id_column"},
    "lhotse": set(),
    "shar": {"audio_column"},
    "files": set(),
}


def _kind_of_file(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(_TAR):
        return "wds"
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz")) and manifest_kind(path):
        return "lhotse"
    if name.endswith(".gz"):
        raise DataError(f"{path}: not a Lhotse manifest (cuts, recordings)")
    return "files"


def _kind_of_folder(path: Path) -> str:
    meta = path / "meta.json"
    if meta.is_file() and '"focalcodec-tokens"' in meta.read_text(errors="replace"):
        raise DataError(f"{path}: is a token folder, not a corpus")
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "arrow"
    if shar_cut_files(path):
        return "shar"
    suffixes = {s.lower() for s in AUDIO_SUFFIXES}
    parquet = next(path.rglob("*.parquet"), None) is not None
    tars = any(p.name.lower().endswith(_TAR) for p in path.iterdir())
    # A folder with audio files in it is an audio folder, whatever else it holds.
    if (parquet or tars) and not any(
        p.suffix.lower() in suffixes for p in path.rglob("*")
    ):
        return "parquet" if parquet else "wds"
    return "files"


def detect_kind(spec: str) -> str:
    """The kind of source ``spec`` names (see the table in this module's docstring).

    Raises :class:`~focalcodec.errors.DataError` for something that is none of them.
    """
    path = Path(spec)
    if path.is_dir():
        return _kind_of_folder(path)
    if path.is_file():
        return _kind_of_file(path)
    if is_pattern(spec) or "://" in spec or spec.startswith("pipe:"):
        if not spec.startswith("hf://"):
            matches = expand_spec(spec)
            if not matches:
                raise DataError(f"{spec}: no files match")
            first = matches[0]
            if "://" in first or first.startswith("pipe:"):
                if first.lower().endswith(_TAR):
                    return "wds"
                raise DataError(f"{spec}: only tar shards can be read from URLs")
            return _kind_of_file(Path(first))
    if _HUB_ID.fullmatch(spec):
        return "hub"
    raise DataError(
        f"{spec}: no such folder, file or dataset; give an audio folder, a JSONL "
        "manifest, Parquet files, a save_to_disk folder, tar shards, a Lhotse "
        "manifest or Shar folder, or a Hub id (owner/name)"
    )


def open_source(spec: str, kind: str | None = None, **options: Any) -> Source:
    """Open a corpus as a :class:`Source`.

    Parameters
    ----------
    spec
        A path, glob, brace pattern or Hub id.
    kind
        One of :data:`KINDS` but ``files``; None detects it (:func:`detect_kind`).
    **options
        ``audio_column``, ``id_column``, ``split`` (None: the default of each kind);
        a kind refuses options it has no use for.
    """
    kind = kind or detect_kind(spec)
    if kind not in KINDS:
        raise UsageError(f"source kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "files":
        raise UsageError(
            f"{spec}: an audio folder or manifest is read by files.manifest.scan"
        )
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(set(given) - _OPTIONS[kind])
    if unused:
        flags = ", ".join("--" + u.replace("_", "-") for u in unused)
        raise UsageError(f"{flags}: not used by a {kind} source ({spec})")
    if kind in ("parquet", "arrow"):
        from .hf import ArrowSource, ParquetSource

        return (ParquetSource if kind == "parquet" else ArrowSource).open(spec, **given)
    if kind == "hub":
        from .hf import HubSource

        return HubSource(spec, **given)
    if kind == "wds":
        from .wds import WebDatasetSource

        return WebDatasetSource(spec, **given)
    from .lhotse import CutsSource, SharSource

    return SharSource(spec, **given) if kind == "shar" else CutsSource(spec)
