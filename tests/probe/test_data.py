"""Entry selection, split assignment and carving, datasets and batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from focalcodec.errors import DataError
from focalcodec.files.manifest import Entry
from focalcodec.probe.data import (
    ProbeDataset,
    assign_splits,
    probe_collate,
    select_entries,
)


def entries(n_per_class=10, classes=("a", "b", "c"), split=None):
    out = []
    for c in classes:
        for i in range(n_per_class):
            meta = {"label": c}
            if split is not None:
                meta["split"] = split
            out.append(Entry(f"{c}/{i}.wav", Path(f"/x/{c}/{i}.wav"), meta))
    return out


def by_label(e):
    return e.meta["label"]


def test_select_entries_globs_and_required_field():
    items = entries() + [Entry("d/0.wav", Path("/x/d/0.wav"), {"other": 1})]
    kept, dropped = select_entries(items, {"id": "a/*"}, "label")
    assert [e.id for e in kept] == [f"a/{i}.wav" for i in range(10)] and dropped == 0
    kept, dropped = select_entries(items, {}, "label")
    assert len(kept) == 30 and dropped == 1
    with pytest.raises(DataError, match="no manifest entry matches id=z"):
        select_entries(items, {"id": "z*"}, "label")
    with pytest.raises(DataError, match="'text' field"):
        select_entries(items, {"id": "a/*"}, "text")


def test_given_splits_are_kept_and_aliases_understood():
    items = entries(4, split="train") + [
        Entry("v.wav", Path("/v.wav"), {"label": "a", "split": "dev"}),
        Entry("t.wav", Path("/t.wav"), {"label": "b", "split": "test"}),
    ]
    splits = assign_splits(
        items, resplit=False, valid_fraction=0.1, test_fraction=0.1, seed=0
    )
    assert [e.id for e in splits.valid] == ["v.wav"]
    assert [e.id for e in splits.test] == ["t.wav"]
    assert len(splits.train) == 12 and splits.carved == []


def test_missing_splits_are_carved_per_class_with_a_fixed_seed():
    items = entries(10)
    kwargs = dict(resplit=False, valid_fraction=0.1, test_fraction=0.2, group=by_label)
    a = assign_splits(items, seed=0, **kwargs)
    b = assign_splits(items, seed=0, **kwargs)
    c = assign_splits(items, seed=1, **kwargs)
    assert a.carved == ["test", "valid"]
    assert [e.id for e in a.test] == [e.id for e in b.test]
    assert [e.id for e in a.test] != [e.id for e in c.test]
    # Per class: 10 -> 2 test, then 8 -> 1 valid, 7 train.
    assert Counter(map(by_label, a.test)) == {"a": 2, "b": 2, "c": 2}
    assert Counter(map(by_label, a.valid)) == {"a": 1, "b": 1, "c": 1}
    assert Counter(map(by_label, a.train)) == {"a": 7, "b": 7, "c": 7}
    ids = [e.id for e in a.train + a.valid + a.test]
    assert sorted(ids) == sorted(e.id for e in items)


def test_resplit_pools_every_split_and_test_only_manifests_need_it():
    items = entries(10, split="test")
    with pytest.raises(DataError, match="--resplit"):
        assign_splits(
            items, resplit=False, valid_fraction=0.1, test_fraction=0.1, seed=0
        )
    splits = assign_splits(
        items,
        resplit=True,
        valid_fraction=0.1,
        test_fraction=0.1,
        seed=0,
        group=by_label,
    )
    assert splits.sizes() == {"train": 24, "valid": 3, "test": 3}


def test_unknown_split_and_empty_split_errors():
    items = entries(3, split="holdout")
    with pytest.raises(DataError, match="unknown split name.*holdout"):
        assign_splits(
            items, resplit=False, valid_fraction=0.1, test_fraction=0.1, seed=0
        )
    with pytest.raises(DataError, match="valid split is empty"):
        assign_splits(
            entries(2, ("a",)),
            resplit=False,
            valid_fraction=0.1,
            test_fraction=0.1,
            seed=0,
            group=by_label,
        )


def test_dataset_crops_and_collate():
    data = {"a": torch.arange(10), "b": torch.arange(3)}
    ds = ProbeDataset(["a", "b"], data.__getitem__, [[1, 2], [3]], crop_frames=4)
    first = ds[0]["x"]
    assert len(first) == 4 and torch.equal(first, torch.arange(first[0], first[0] + 4))
    assert torch.equal(ds[0]["x"], first)  # same epoch, same crop
    starts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        starts.add(int(ds[0]["x"][0]))
    assert len(starts) > 1  # a new position every epoch
    batch = probe_collate([ds[0], ds[1]])
    assert batch["x"].shape == (2, 4) and batch["length"].tolist() == [4, 3]
    assert batch["target"].tolist() == [[1, 2], [3, 0]]
    assert batch["target_len"].tolist() == [2, 1]
    labels = ProbeDataset(["b"], data.__getitem__, [2])
    assert probe_collate([labels[0]])["label"].tolist() == [2]
