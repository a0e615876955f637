"""WebDataset tar shards as a token source (Emilia's layout: ``KEY.mp3`` + ``KEY.json``).

A source is a tar file, a glob (``shards/*.tar``) or a brace pattern
(``EN-B{000000..000099}.tar``; URLs and ``pipe:`` commands work as in ``webdataset``).
Each tar is one shard, read as a stream by ``webdataset``'s tar iterators: members are
grouped by key (the name up to its first dot), the audio is the member whose extension
is an audio format (or ``audio_column``), a ``.json`` member gives metadata (its scalar
fields) and a ``.txt`` member the text. The id is the key, or the JSON field
``id_column``.

Needs ``pip install 'focalcodec[wds]'`` (webdataset).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError, UsageError
from ...files.audio import AUDIO_SUFFIXES
from .base import Item, Shard, Source, expand_spec, scalar_meta

__all__ = ["WebDatasetSource"]

_AUDIO = {s.lstrip(".") for s in AUDIO_SUFFIXES}
_TAR = (".tar", ".tar.gz", ".tgz")


def is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


class WebDatasetSource(Source):
    """Tar shards; see the module docstring."""

    kind = "wds"

    def __init__(
        self,
        spec: str,
        *,
        audio_column: str | None = None,
        id_column: str | None = None,
    ) -> None:
        super().__init__(spec)
        folder = Path(spec)
        if folder.is_dir():
            urls = sorted(str(p) for p in folder.iterdir() if p.name.endswith(_TAR))
        else:
            urls = expand_spec(spec)
        if not urls:
            raise DataError(f"{spec}: no tar shards found")
        for url in urls:
            if not is_remote(url) and not Path(url).is_file():
                raise DataError(f"{url}: no such tar shard")
        self.urls = urls
        self.audio_column = audio_column.lstrip(".") if audio_column else None
        self.id_column = id_column

    def shards(self) -> list[Shard]:
        local = [Path(u) for u in self.urls if not is_remote(u)]
        root = _root(local) if len(local) == len(self.urls) else None
        out = []
        for k, url in enumerate(self.urls):
            name = Path(url).relative_to(root).as_posix() if root else url
            out.append(Shard(k, name, url))
        return out

    def read_shard(self, shard: Shard) -> Iterator[Item]:
        try:
            from webdataset.tariterators import tarfile_samples
        except ImportError:
            raise UsageError(
                "reading WebDataset shards needs webdataset: pip install "
                "'focalcodec[wds]'"
            ) from None
        try:
            for row, sample in enumerate(tarfile_samples([{"url": shard.path}])):
                yield self._item(sample, shard, row)
        except Exception as exc:
            # webdataset appends the stream and URL to the error; keep its message.
            text = str(exc.args[0]) if exc.args else type(exc).__name__
            raise DataError(f"{shard.path}: {text.split(' @ ')[0]}") from None
        if not is_remote(shard.path) and not _complete_tar(Path(shard.path)):
            # tarfile reads a cut-off archive as a shorter one, without a word.
            raise DataError(f"{shard.path}: truncated (no end-of-archive blocks)")

    def _audio_member(self, sample: dict[str, Any]) -> str | None:
        if self.audio_column is not None:
            return self.audio_column if self.audio_column in sample else None
        for ext in sample:
            if not ext.startswith("__") and ext.rsplit(".", 1)[-1] in _AUDIO:
                return ext
        return None

    def _item(self, sample: dict[str, Any], shard: Shard, row: int) -> Item:
        key = str(sample["__key__"])
        meta: dict[str, Any] = {}
        problem = None
        for ext, data in sample.items():
            if ext == "json" or ext.endswith(".json"):
                try:
                    value = json.loads(data)
                except ValueError as exc:
                    problem = f"{ext} member is not JSON ({exc})"
                    continue
                if isinstance(value, dict):
                    meta.update(scalar_meta(value))
        if "txt" in sample and "text" not in meta:
            meta["text"] = sample["txt"].decode("utf-8", errors="replace").strip()
        item_id = key
        if self.id_column is not None:
            if meta.get(self.id_column) is None:
                problem = problem or f"no JSON field {self.id_column!r}"
            else:
                item_id = str(meta.pop(self.id_column))
        duration = meta.get("duration")
        item = Item(item_id, shard.name, row, None, meta, path=shard.path)
        item.duration = float(duration) if isinstance(duration, (int, float)) else None
        member = self._audio_member(sample)
        if problem is None and member is None:
            found = ", ".join(e for e in sample if not e.startswith("__"))
            problem = (
                f"no audio member (members: {found}); name one with --audio-column"
            )
        item.audio = DataError(f"{item.name}: {problem}") if problem else sample[member]
        return item


def _complete_tar(path: Path) -> bool:
    """Whether an uncompressed tar ends as tar archives end: two zero blocks of 512
    bytes (compressed ones carry their own checks)."""
    if not path.name.lower().endswith(".tar"):
        return True
    size = path.stat().st_size
    if size < 1024 or size % 512:
        return False
    with open(path, "rb") as fileobj:
        fileobj.seek(size - 1024)
        return not fileobj.read(1024).strip(b"\0")


def _root(paths: list[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path(".")
