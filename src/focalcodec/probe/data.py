"""Probe data: which manifest entries, which splits, and the batches the probe sees.

Splits come from the manifest's ``split`` field (``train``, ``valid``, ``test``; the
aliases ``dev``, ``devel``, ``val`` and ``validation`` mean ``valid``; an entry without
a split is a training entry). A missing ``test`` split is carved from the training
entries first, then a missing ``valid`` split; with ``resplit`` all entries are pooled
and both are carved. Carving is a seeded shuffle, per class for classification (so
every class keeps its share), and the same seed always gives the same split.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..files.manifest import Entry

__all__ = [
    "ProbeDataset",
    "Splits",
    "assign_splits",
    "probe_collate",
    "select_entries",
]

_ALIASES = {
    "train": "train",
    "valid": "valid",
    "dev": "valid",
    "devel": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}


def _field(entry: Entry, name: str) -> str | None:
    if name == "id":
        return entry.id
    value = entry.meta.get(name)
    return None if value is None else str(value)


def select_entries(
    entries: Sequence[Entry], where: dict[str, str], required: str
) -> tuple[list[Entry], int]:
    """Entries whose fields match every ``where`` glob and that have ``required``.

    Returns
    -------
        ``(kept, dropped)``: the entries, and how many matched ``where`` but had no
        (or an empty) ``required`` field.
    """
    matched = [
        e
        for e in entries
        if all(
            (value := _field(e, key)) is not None and fnmatch.fnmatchcase(value, glob)
            for key, glob in where.items()
        )
    ]
    if not matched:
        shown = " ".join(f"{k}={v}" for k, v in where.items())
        raise DataError(f"no manifest entry matches {shown}")
    kept = [e for e in matched if (_field(e, required) or "").strip()]
    if not kept:
        raise DataError(f"no selected manifest entry has a '{required}' field")
    return kept, len(matched) - len(kept)


@dataclass
class Splits:
    """Entries of each split and which splits were carved (not given)."""

    train: list[Entry]
    valid: list[Entry]
    test: list[Entry]
    carved: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
        }


def _carve(
    pool: list[Entry],
    fraction: float,
    seed: int,
    tag: str,
    group: Callable[[Entry], str] | None,
) -> tuple[list[Entry], list[Entry]]:
    """Split ``pool`` into (rest, carved), ``fraction`` of each group carved."""
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(pool):
        groups.setdefault(group(entry) if group else "", []).append(i)
    held: set[int] = set()
    for name in sorted(groups):
        members = groups[name]
        random.Random(f"{tag}/{seed}/{name}").shuffle(members)
        count = round(fraction * len(members))
        if count == 0 and group is None and len(members) > 1:
            count = 1
        held.update(members[:count])
    rest = [e for i, e in enumerate(pool) if i not in held]
    return rest, [e for i, e in enumerate(pool) if i in held]


def assign_splits(
    entries: Sequence[Entry],
    *,
    resplit: bool,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    group: Callable[[Entry], str] | None = None,
) -> Splits:
    """Training, validation and test entries (see the module docstring).

    Parameters
    ----------
    entries
        The selected entries.
    resplit
        Ignore the ``split`` field and carve every split from all entries.
    valid_fraction, test_fraction
        Shares carved when a split is missing.
    seed
        Seed of the carving.
    group
        Class of an entry, to carve per class (classification); None carves the whole
        pool at once.
    """
    given: dict[str, list[Entry]] = {"train": [], "valid": [], "test": []}
    unknown = set()
    for entry in entries:
        name = "train" if resplit or entry.split is None else entry.split.lower()
        if name not in _ALIASES:
            unknown.add(entry.split)
            continue
        given[_ALIASES[name]].append(entry)
    if unknown:
        raise DataError(
            f"unknown split name(s) {', '.join(sorted(unknown))}; use train, valid or "
            "test (or pass --resplit to carve the splits from all entries)"
        )
    if not given["train"]:
        raise DataError(
            "no training entries (split=train); pass --resplit to carve train, valid "
            "and test from the selected entries"
        )
    carved = []
    train = given["train"]
    for name, fraction in (("test", test_fraction), ("valid", valid_fraction)):
        if not given[name]:
            train, given[name] = _carve(train, fraction, seed, name, group)
            carved.append(name)
    given["train"] = train
    for name in ("train", "valid", "test"):
        if not given[name]:
            raise DataError(
                f"the {name} split is empty ({len(entries)} entries selected); add "
                "entries or raise data.valid_fraction / data.test_fraction"
            )
    return Splits(given["train"], given["valid"], given["test"], carved)


class ProbeDataset(Dataset):
    """Inputs (tokens or features) and targets of one split.

    Parameters
    ----------
    keys
        One cache key per item (see :mod:`focalcodec.probe.cache`).
    load
        Maps a key to its input: tokens (T,) int64 or features (T, D) float32.
    targets
        Per item: a class index, or a list of unit ids (ASR).
    crop_frames
        Random crops of this many frames (training only), None for whole items.
    seed
        Seed of the crop positions (with the epoch and the item index).
    """

    def __init__(
        self,
        keys: Sequence[str],
        load: Callable[[str], torch.Tensor],
        targets: Sequence[int | list[int]],
        crop_frames: int | None = None,
        seed: int = 0,
    ) -> None:
        self.keys = list(keys)
        self.load = load
        self.targets = list(targets)
        self.crop_frames = crop_frames
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crop positions of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.load(self.keys[index])
        if self.crop_frames is not None and x.shape[0] > self.crop_frames:
            rng = random.Random(f"crop/{self.seed}/{self.epoch}/{index}")
            start = rng.randint(0, x.shape[0] - self.crop_frames)
            x = x[start : start + self.crop_frames]
        target = self.targets[index]
        item = {"x": x, "length": torch.tensor(x.shape[0])}
        if isinstance(target, list):
            item["target"] = torch.tensor(target, dtype=torch.long)
            item["target_len"] = torch.tensor(len(target))
        else:
            item["label"] = torch.tensor(int(target))
        return item


def probe_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, right-padding ``x`` and ``target`` with zeros."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if values[0].dim() == 0:
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
    return batch
