"""Sharded token datasets for speech-LM training, written resumably.

Layout of an output directory::

    meta.json                 model identity and token format (written first)
    index.jsonl               one JSON line per item: id, shard, num_tokens, ... (appended)
    shard-00000.safetensors   tokens of up to ``shard_size`` items, one 1-D tensor per id
    shard-00001.safetensors
    ...

A shard is written atomically and only then are its items appended to the index, in one
write followed by fsync. The index is therefore the record of what is done: a crash or
Ctrl-C loses at most the shard being filled, and the next run skips every indexed item.
A shard whose index lines never made it is left unreferenced and is not reused.

Reading back::

    for record, toks in iter_tokens("out/"):
        ...  # toks: (L,) uint16 (int64 for codebooks above 2**16)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .atomic import atomic_write

__all__ = ["INDEX", "META", "ShardWriter", "iter_tokens", "read_index", "token_dtype"]

INDEX = "index.jsonl"
META = "meta.json"
SHARD_GLOB = "shard-*.safetensors"
TOKENS_FORMAT = "focalcodec-tokens"


def token_dtype(bits: int) -> np.dtype:
    """Smallest unsigned-safe dtype for token ids of ``bits`` bits."""
    return np.dtype(np.uint16) if bits <= 16 else np.dtype(np.int64)


def read_index(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of all completed items, in the order they were written."""
    path = Path(out_dir) / INDEX
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    # A torn last line (crash during the append) is ignored; its shard is redone.
    lines = text.split("\n")[:-1]
    try:
        return [json.loads(line) for line in lines if line]
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: corrupted index line ({exc})") from None


def iter_tokens(out_dir: str | os.PathLike) -> Iterator[tuple[dict, np.ndarray]]:
    """Yield ``(record, toks)`` for every indexed item; toks has shape (L,)."""
    from safetensors.numpy import load_file

    cache: dict[str, dict[str, np.ndarray]] = {}
    for record in read_index(out_dir):
        shard = record["shard"]
        if shard not in cache:
            cache.clear()
            cache[shard] = load_file(Path(out_dir) / shard)
        yield record, cache[shard][record["id"]]


class ShardWriter:
    """Accumulate token sequences and write them as shards plus index lines.

    Parameters
    ----------
    out_dir
        Output directory (created if missing).
    meta
        Model identity and token format; must equal the ``meta.json`` of a run being
        resumed.
    shard_size
        Items per shard.
    force
        Start over: delete this tool's files in ``out_dir`` (meta, index, shards).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        meta: dict[str, Any],
        *,
        shard_size: int = 256,
        force: bool = False,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.out_dir = Path(out_dir)
        self.meta = {"format": TOKENS_FORMAT, "version": 1, **meta}
        self.shard_size = shard_size
        self.dtype = token_dtype(int(meta["bits_per_token"]))
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise FormatError(f"{self.out_dir}: output exists and is not a directory")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if force:
            self._clear()
        self._check_meta()
        self._repair_index()
        self.done = {r["id"] for r in read_index(self.out_dir)}
        self._pending: list[tuple[dict[str, Any], np.ndarray]] = []
        self.written = 0

    def add(self, record: dict[str, Any], toks: np.ndarray) -> None:
        """Queue one item; ``record["id"]`` names it and must be new.

        Parameters
        ----------
        record
            JSON-serialisable description (id, source path, speaker, ...).
        toks
            Token ids, shape (L,).
        """
        if record["id"] in self.done:
            raise FormatError(f"{record['id']}: duplicate item id")
        self.done.add(record["id"])
        self._pending.append((dict(record), np.asarray(toks).astype(self.dtype)))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the queued items as one shard, then index them."""
        if not self._pending:
            return
        from safetensors.numpy import save

        name = self._next_shard_name()
        tensors = {rec["id"]: toks for rec, toks in self._pending}
        with atomic_write(self.out_dir / name) as fileobj:
            fileobj.write(save(tensors))
        lines = "".join(
            json.dumps({**rec, "shard": name, "num_tokens": int(len(toks))}) + "\n"
            for rec, toks in self._pending
        )
        with open(self.out_dir / INDEX, "a", encoding="utf-8") as index:
            index.write(lines)
            index.flush()
            os.fsync(index.fileno())
        self.written += len(self._pending)
        self._pending = []

    def _next_shard_name(self) -> str:
        numbers = [int(p.stem.split("-")[1]) for p in self._shards()]
        return f"shard-{max(numbers, default=-1) + 1:05d}.safetensors"

    def _shards(self) -> list[Path]:
        out = []
        for path in self.out_dir.glob(SHARD_GLOB):
            number = path.stem.split("-", 1)[1]
            if number.isdigit():
                out.append(path)
        return out

    def _clear(self) -> None:
        for path in [self.out_dir / META, self.out_dir / INDEX, *self._shards()]:
            if path.exists():
                path.unlink()

    def _check_meta(self) -> None:
        path = self.out_dir / META
        if not path.exists():
            if (self.out_dir / INDEX).exists():
                raise FormatError(f"{self.out_dir}: has {INDEX} but no {META}")
            with atomic_write(path) as fileobj:
                fileobj.write(json.dumps(self.meta, indent=2).encode() + b"\n")
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"{path}: unreadable ({exc})") from None
        if old != self.meta:
            raise FormatError(
                f"{self.out_dir}: holds tokens from {old.get('model_name') or 'a model'} "
                f"(config {old.get('config_hash')}), not from the current model "
                f"(config {self.meta.get('config_hash')}); use another output "
                "directory, or --force to start over"
            )

    def _repair_index(self) -> None:
        path = self.out_dir / INDEX
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            # Drop the torn tail so that the next append starts on a fresh line.
            with open(path, "r+b") as index:
                index.truncate(data.rfind(b"\n") + 1)
