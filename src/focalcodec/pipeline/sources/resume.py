"""Where stored items came from: resuming a source by shard, and its output order.

Every item tokenized from a :class:`~focalcodec.pipeline.sources.base.Source` is stored
with its ``shard`` and ``shard_row``. On a restart a rank reads these (from the index
and the journals: JSON only, no token data) to know which stored items belong to its
shards; at the end rank 0 sorts every stored item by shard, then row, which is the
source's order whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...tokens.files import INDEX, journal_paths, read_index, read_journal
from .base import Shard

__all__ = ["Place", "skip_sets", "source_order", "stored_places"]

Place = tuple[str, int]  # (shard name, row in the shard)


def stored_places(folder: str | Path) -> dict[str, Place]:
    """Item id -> (shard, row) of every item recorded in a token folder (the index,
    then each rank's journal); items without a shard are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    records = [item for _, item in read_index(folder / INDEX)]
    for journal in journal_paths(folder):
        for part in read_journal(journal):
            records.extend(part.items)
    places: dict[str, Place] = {}
    for record in records:
        shard, row = record.get("shard"), record.get("shard_row")
        if isinstance(shard, str) and isinstance(row, int):
            places.setdefault(record["id"], (shard, row))
    return places


def skip_sets(done: Iterable[str], places: dict[str, Place]) -> dict[str, set[str]]:
    """Shard name -> the ids of ``done`` stored from it."""
    out: dict[str, set[str]] = {}
    for item_id in done:
        place = places.get(item_id)
        if place is not None:
            out.setdefault(place[0], set()).add(item_id)
    return out


def source_order(places: dict[str, Place], shards: list[Shard]) -> list[str]:
    """Stored ids in source order: by shard position, then row; items of shards the
    source no longer has come last, by shard name."""
    position = {s.name: s.index for s in shards}
    last = len(shards)

    def key(item_id: str) -> tuple:
        shard, row = places[item_id]
        return (position.get(shard, last), shard, row, item_id)

    return sorted(places, key=key)
