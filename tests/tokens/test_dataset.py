"""Token folders: writing, resuming, reading back (npy and Parquet), damage, packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec.errors import FormatError, InputError, ModelMismatchError
from focalcodec.tokens.dataset import (
    TokenDataset,
    TokenWriter,
    finish,
    open_folder,
    owner_rank,
    pack_collate,
    read_meta,
    write_tokens,
)

META = {"codebook_size": 4096, "model_name": "m", "config_hash": "ab", "token_rate": 50}
FORMATS = ["npy", "parquet"]


def make_items(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"utt{i:03d}",
            "path": f"/audio/utt{i:03d}.flac",
            "tokens": rng.integers(0, 4096, size=int(rng.integers(1, 40))),
            "duration": 0.5 + i,
            "speaker": f"spk{i % 3}",
            "language": "en",
            "text": f"words {i}",
            "split": "train" if i % 4 else "test",
            "room": i,  # not a fixed column: kept in ``extra`` (Parquet) / the index
        }
        for i in range(n)
    ]


def data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".npy", ".parquet"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_and_read_back(tmp_path, fmt):
    items = make_items(11)
    ds = write_tokens(tmp_path / "t", items, META, fmt=fmt, shard_size=3)
    assert len(ds) == 11 and ds.ids == [i["id"] for i in items]
    for got, want in zip(ds, items):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
        assert got["tokens"].dtype == np.int64
        assert got["num_tokens"] == len(want["tokens"])
        for key in ("id", "path", "duration", "speaker", "language", "text", "split"):
            assert got[key] == want[key]
        assert got["room"] == want["room"]
    assert ds.meta["format"] == fmt and ds.meta["dtype"] == "uint16"
    assert ds.meta["codebook_size"] == 4096 and ds.meta["bits_per_token"] == 12
    assert ds.meta["model_name"] == "m" and ds.meta["token_rate"] == 50
    assert ds.num_tokens == sum(len(i["tokens"]) for i in items)
    assert [x["id"] for x in TokenDataset(tmp_path / "t", split="test")] == [
        "utt000",
        "utt004",
        "utt008",
    ]
    if fmt == "npy":
        assert data_files(tmp_path / "t") == ["offsets.npy", "tokens.npy"]
    else:
        assert len(data_files(tmp_path / "t")) == 4  # 11 items, 3 per file


def test_npy_is_one_flat_memory_mappable_array(tmp_path):
    items = make_items(7)
    write_tokens(tmp_path / "t", items, META)
    toks = np.load(tmp_path / "t" / "tokens.npy", mmap_mode="r")
    offsets = np.load(tmp_path / "t" / "offsets.npy")
    assert isinstance(toks, np.memmap) and toks.dtype == np.uint16
    assert len(offsets) == 8 and offsets[0] == 0 and offsets[-1] == len(toks)
    for k, item in enumerate(items):
        np.testing.assert_array_equal(toks[offsets[k] : offsets[k + 1]], item["tokens"])


def test_parquet_reads_with_pyarrow_and_datasets(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    items = make_items(9)
    write_tokens(tmp_path / "t", items, META, fmt="parquet", shard_size=4)
    table = pq.read_table(sorted((tmp_path / "t").glob("*.parquet")))
    assert table.column_names == [
        "id", "path", "tokens", "num_tokens", "duration",
        "speaker", "language", "text", "split", "extra",
    ]  # fmt: skip
    assert str(table.schema.field("tokens").type) == "list<element: uint16>"
    rows = {r["id"]: r for r in table.to_pylist()}
    loaded = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "t" / "*.parquet"), split="train"
    )
    assert len(loaded) == 9
    for row in loaded:
        assert rows[row["id"]]["tokens"] == row["tokens"]
    for item in items:
        row = rows[item["id"]]
        assert row["tokens"] == item["tokens"].tolist()
        assert row["num_tokens"] == len(item["tokens"]) and row["text"] == item["text"]
        assert json.loads(row["extra"]) == {"room": item["room"]}


def test_large_codebooks_use_int32(tmp_path):
    items = [{"id": "a", "tokens": np.array([0, 2**16, 2**20 - 1])}]
    for fmt in FORMATS:
        ds = write_tokens(tmp_path / fmt, items, {"codebook_size": 2**20}, fmt=fmt)
        assert ds.meta["dtype"] == "int32"
        np.testing.assert_array_equal(ds[0]["tokens"], items[0]["tokens"])


def test_bad_items_are_refused(tmp_path):
    with pytest.raises(InputError, match="lie in"):
        write_tokens(tmp_path / "a", [{"id": "x", "tokens": [4096]}], META)
    with pytest.raises(InputError, match="1-D integer"):
        write_tokens(tmp_path / "b", [{"id": "x", "tokens": [0.5]}], META)
    with pytest.raises(InputError, match="string 'id'"):
        write_tokens(tmp_path / "c", [{"tokens": [1]}], META)
    with pytest.raises(InputError, match="duplicate"):
        write_tokens(tmp_path / "d", [{"id": "x", "tokens": [1]}] * 2, META)
    with pytest.raises(InputError, match="codebook_size"):
        write_tokens(tmp_path / "e", [], {"model_name": "m"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_keeps_done_items_and_adds_new(tmp_path, fmt):
    items = make_items(10)
    out = tmp_path / "t"
    write_tokens(out, items[:6], META, fmt=fmt, shard_size=4)
    open_folder(out, META, fmt=fmt)
    writer = TokenWriter(out, shard_size=4)
    assert writer.done == {i["id"] for i in items[:6]} and not writer.damaged
    # A second run over the full list writes only the new items, in source order.
    ds = write_tokens(out, items, META, fmt=fmt, shard_size=4)
    assert ds.ids == [i["id"] for i in items]
    for got, want in zip(ds, items):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])


def test_other_model_or_format_needs_force(tmp_path):
    out = tmp_path / "t"
    write_tokens(out, make_items(2), META)
    with pytest.raises(ModelMismatchError, match="--force"):
        write_tokens(out, make_items(2), {**META, "config_hash": "cd"})
    with pytest.raises(ModelMismatchError, match="npy tokens"):
        write_tokens(out, make_items(2), META, fmt="parquet")
    (out / "notes.txt").write_text("mine")
    ds = write_tokens(out, make_items(3), META, fmt="parquet", force=True)
    assert len(ds) == 3 and ds.meta["format"] == "parquet"
    assert (out / "notes.txt").read_text() == "mine"  # --force deletes only our files


def test_unfinished_folder_is_refused_until_finished(tmp_path):
    out = tmp_path / "t"
    open_folder(out, META)
    writer = TokenWriter(out, shard_size=2)
    for item in make_items(3):
        writer.add({k: v for k, v in item.items() if k != "tokens"}, item["tokens"])
    writer.flush()
    with pytest.raises(FormatError, match="not finished"):
        TokenDataset(out)
    assert finish(out).items == 3 and len(TokenDataset(out)) == 3


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip a byte near the end, where the tokens are
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_files_are_redone_on_resume(tmp_path, fmt, how):
    items = make_items(8)
    out = tmp_path / "t"
    open_folder(out, META, fmt=fmt)
    writer = TokenWriter(out, shard_size=3)
    for item in items:
        writer.add({k: v for k, v in item.items() if k != "tokens"}, item["tokens"])
    writer.flush()
    victim = out / ("part-r00000-00001." + fmt)
    damage(victim, how)
    # Resume: the damaged file's three items are not done, the others are.
    writer = TokenWriter(out, shard_size=3)
    assert writer.done == {i["id"] for i in items[:3] + items[6:]}
    assert len(writer.damaged) == 1 and victim.name in writer.damaged[0]
    ds = write_tokens(out, items, META, fmt=fmt, shard_size=3)
    assert ds.ids == [i["id"] for i in items]
    for got, want in zip(TokenDataset(out, verify=True), items):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
    assert not victim.exists() or fmt == "npy"  # unreferenced data files are removed


@pytest.mark.parametrize("fmt", FORMATS)
def test_damaged_finished_folder_is_detected_on_read_and_resume(tmp_path, fmt):
    items = make_items(6)
    out = tmp_path / "t"
    write_tokens(out, items, META, fmt=fmt, shard_size=2)
    victim = sorted(p for p in out.iterdir() if p.name.startswith(("part", "tokens")))
    damage(victim[0], "flip")
    if fmt == "npy":
        TokenDataset(out)  # same size: only a full read sees it
    else:  # the flip lands in the footer, which opening reads (column types)
        with pytest.raises(FormatError, match="unreadable token file"):
            TokenDataset(out)
    with pytest.raises(FormatError, match="checksum"):
        TokenDataset(out, verify=True)
    ds = write_tokens(out, items, META, fmt=fmt, shard_size=2)  # resume redoes it
    for got, want in zip(TokenDataset(out, verify=True), ds):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
    victim = sorted(p for p in out.iterdir() if p.name.startswith(("part", "tokens")))
    damage(victim[0], "truncate")
    with pytest.raises(FormatError, match="truncated"):
        TokenDataset(out)


def test_unreadable_files_raise_format_error(tmp_path):
    with pytest.raises(FormatError, match="no such token folder"):
        TokenDataset(tmp_path / "missing")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "shard-00000.safetensors").write_bytes(b"x")
    with pytest.raises(FormatError, match="older focalcodec"):
        TokenDataset(tmp_path / "old")
    out = tmp_path / "t"
    write_tokens(out, make_items(2), META)
    (out / "index.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(FormatError, match="file fields"):
        TokenDataset(out)
    (out / "meta.json").write_text("{not json")
    with pytest.raises(FormatError, match="unreadable"):
        read_meta(out)


def test_crash_inside_finish_is_recovered(tmp_path):
    """A crash between finish()'s two renames: the next open completes the second."""
    out = tmp_path / "t"
    items = make_items(5)
    write_tokens(out, items[:3], META)
    index = (out / "index.jsonl").read_text()
    write_tokens(out, items, META)
    # Simulate: new tokens.npy in place, index not yet renamed.
    (out / ".index.jsonl.next").write_text((out / "index.jsonl").read_text())
    (out / "index.jsonl").write_text(index)
    ds = write_tokens(out, items, META)
    assert (
        ds.ids == [i["id"] for i in items] and not (out / ".index.jsonl.next").exists()
    )


def test_dataset_works_in_dataloader_workers(tmp_path):
    items = make_items(6)
    ds = write_tokens(tmp_path / "t", items, META)
    ds[0]  # opens the memory map in this process; workers must reopen theirs
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2, collate_fn=pack_collate(16, 4096)
    )
    blocks = torch.cat(list(loader))
    assert blocks.shape[1] == 16 and blocks.dtype == torch.int64


def test_pack_collate_blocks_and_separators():
    items = [{"tokens": np.array([1, 2, 3])}, {"tokens": np.array([4, 5])}, [6]]
    out = pack_collate(4, 99)(items)
    assert out.dtype == torch.int64
    assert out.tolist() == [[1, 2, 3, 99], [4, 5, 99, 6]]
    padded = pack_collate(3, 99)(items)  # the last block is filled with separators
    assert padded.tolist() == [[1, 2, 3], [99, 4, 5], [99, 6, 99]]
    padded = pack_collate(5, 99, pad=0)(items)
    assert padded.tolist() == [[1, 2, 3, 99, 4], [5, 99, 6, 0, 0]]
    dropped = pack_collate(3, 99, drop_last=True)(items)
    assert dropped.tolist() == [[1, 2, 3], [99, 4, 5]]
    assert pack_collate(4, 99, drop_last=True)([[1]]).shape == (0, 4)
    with pytest.raises(InputError):
        pack_collate(0, 99)


def test_owner_rank_is_stable_and_balanced():
    ids = [f"utt{i}" for i in range(1000)]
    ranks = [owner_rank(i, 4) for i in ids]
    assert ranks == [owner_rank(i, 4) for i in ids]
    assert ranks[:6] == [owner_rank(i, 4) for i in ids[:6]]
    assert all(200 < ranks.count(r) < 300 for r in range(4))
    assert {owner_rank(i, 1) for i in ids} == {0}


def test_resume_with_another_number_of_ranks(tmp_path):
    """Two ranks stop half way; one process finishes the job without duplicates."""
    items = make_items(12)
    out = tmp_path / "t"
    open_folder(out, META)
    for rank in range(2):
        writer = TokenWriter(out, rank=rank, shard_size=2)
        mine = [i for i in items if owner_rank(i["id"], 2) == rank][:3]
        for item in mine:
            writer.add({k: v for k, v in item.items() if k != "tokens"}, item["tokens"])
        writer.flush()
    assert len(list(out.glob("journal-r*.jsonl"))) == 2
    ds = write_tokens(out, items, META, shard_size=5)
    assert ds.ids == [i["id"] for i in items]
    for got, want in zip(ds, items):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
    assert not list(out.glob("journal-*")) and not list(out.glob("part-*"))


def test_force_replaces_a_folder_of_the_old_shard_format(tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    (out / "meta.json").write_text('{"format": "focalcodec-tokens", "version": 1}')
    (out / "index.jsonl").write_text(
        '{"id": "a", "shard": "shard-00000.safetensors"}\n'
    )
    (out / "shard-00000.safetensors").write_bytes(b"old")
    with pytest.raises(FormatError, match="--force"):
        write_tokens(out, make_items(2), META)
    assert len(write_tokens(out, make_items(2), META, force=True)) == 2
    assert not (out / "shard-00000.safetensors").exists()
