"""Training data: manifests, splits, resampling, aligned crops, feature cache, sampler."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec.errors import AudioError, CheckpointError, ConfigError, DataError
from focalcodec.files.manifest import read_manifest
from focalcodec.train.cache import FeatureCache, module_fingerprint
from focalcodec.train.data import (
    AudioDataset,
    EpochBatchSampler,
    collate,
    list_entries,
    load_audio,
    split_entries,
)


def ramp_file(path, seconds=1.0, rate=16000):
    """A slow ramp: the value at sample i tells where a crop came from."""
    n = int(seconds * rate)
    sf.write(path, np.linspace(-0.9, 0.9, n, dtype=np.float32), rate, subtype="FLOAT")
    return n


def test_shared_manifest_counts(shared_dir):
    entries = read_manifest(shared_dir / "audio" / "manifest.jsonl")
    # Totals from shared/audio/README.md: 499 files, 346 train and 153 test.
    assert len(entries) == 499
    assert sum(e.split == "train" for e in entries) == 346
    assert sum(e.split == "test" for e in entries) == 153
    assert all(e.path.is_file() for e in entries[:5])


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"path": "a.wav"}\n{"nopath": 1}\n')
    with pytest.raises(DataError, match="m.jsonl:2"):
        read_manifest(bad)
    with pytest.raises(DataError, match="no such folder"):
        list_entries(tmp_path / "missing", None, [".wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        list_entries(tmp_path / "empty", None, [".wav"])


def test_directory_source_and_held_out_split(tmp_path):
    for i in range(10):
        ramp_file(tmp_path / f"f{i}.wav", 0.1)
    (tmp_path / "notes.txt").write_text("not audio")
    entries = list_entries(tmp_path, None, [".wav"])
    assert len(entries) == 10
    train, valid = split_entries(entries, None, None, 0.2, seed=3)
    assert len(train) == 8 and len(valid) == 2
    assert not {e.path for e in train} & {e.path for e in valid}
    again = split_entries(entries, None, None, 0.2, seed=3)
    assert again == (train, valid)
    others = [split_entries(entries, None, None, 0.2, seed=s)[1] for s in range(4, 8)]
    assert any({e.path for e in o} != {e.path for e in valid} for o in others)


def test_named_splits(data_dir):
    # tests/data/audio/manifest.jsonl: 9 train and 6 test lines of the shared manifest.
    entries = read_manifest(data_dir / "audio" / "manifest.jsonl")
    train, valid = split_entries(entries, "train", "test", 0.5, seed=0)
    assert len(train) == 9 and len(valid) == 6
    with pytest.raises(ConfigError, match="selects no files"):
        split_entries(entries, "dev", None, 0.0, seed=0)


def test_resampling_a_48k_file(data_dir):
    rows = [
        json.loads(line)
        for line in (data_dir / "audio" / "manifest.jsonl").read_text().splitlines()
    ]
    row = next(r for r in rows if r["sample_rate"] == 48000)
    sig16, sig24 = load_audio(data_dir / "audio" / row["path"], [16000, 24000])
    assert sig16.dtype == torch.float32
    assert abs(len(sig16) - row["duration"] * 16000) <= 1
    assert abs(len(sig24) - row["duration"] * 24000) <= 1


def test_unreadable_audio(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(AudioError, match="broken.wav"):
        load_audio(path, [16000])


def test_crops_are_frame_aligned_across_rates(tmp_path):
    n = ramp_file(tmp_path / "ramp.wav", 1.0)
    entries = list_entries(tmp_path, None, [".wav"])
    data = AudioDataset(entries, 16000, hop=320, target_rate=24000, crop_samples=3200)
    ramp = np.linspace(-0.9, 0.9, n)
    starts = set()
    for epoch in range(6):
        data.set_epoch(epoch)
        item = data[0]
        assert item["sig"].shape == (3200,) and item["target"].shape == (4800,)
        start = int(np.argmin(np.abs(ramp - item["sig"][0].item())))
        assert start % 320 == 0
        starts.add(start)
        # The 24 kHz target starts at the same instant (within resampler precision).
        mid_in = item["sig"][1600].item()
        mid_out = item["target"][2400].item()
        assert abs(mid_in - mid_out) < 1e-3
    assert len(starts) > 1  # crops move between epochs


def test_crop_positions_are_reproducible(tmp_path):
    ramp_file(tmp_path / "ramp.wav", 1.0)
    entries = list_entries(tmp_path, None, [".wav"])
    a = AudioDataset(entries, 16000, 320, crop_samples=3200, seed=5)
    b = AudioDataset(entries, 16000, 320, crop_samples=3200, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.equal(a[0]["sig"], b[0]["sig"])


def test_short_files_are_padded_and_masked(tmp_path):
    ramp_file(tmp_path / "short.wav", 0.1)  # 1600 samples < crop
    entries = list_entries(tmp_path, None, [".wav"])
    data = AudioDataset(entries, 16000, 320, crop_samples=3200)
    item = data[0]
    assert item["sig"].shape == (3200,)
    assert int(item["sig_len"]) == 1600
    assert torch.all(item["sig"][1600:] == 0)
    batch = collate([item, item])
    assert batch["sig"].shape == (2, 3200)
    assert torch.allclose(batch["length"], torch.tensor([0.5, 0.5]))


def test_crop_must_be_a_multiple_of_the_hop(tmp_path):
    with pytest.raises(ConfigError, match="multiple"):
        AudioDataset([], 16000, 320, crop_samples=7000)


def frame_means(sig: torch.Tensor, hop: int = 320) -> torch.Tensor:
    """A stand-in encoder: one 2-d feature per hop-sized frame."""
    frames = sig[: len(sig) // hop * hop].reshape(-1, hop)
    return torch.stack([frames.mean(1), frames.std(1)], dim=1)


def test_feature_cache_build_load_and_alignment(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    ramp_file(audio / "a.wav", 1.0)
    ramp_file(audio / "b.wav", 0.5)
    entries = list_entries(audio, None, [".wav"])
    calls = []

    def encode(path):
        calls.append(path)
        return frame_means(load_audio(path, [16000])[0])

    cache = FeatureCache(tmp_path / "cache", "key1")
    assert cache.build([e.path for e in entries], encode) == 2
    assert cache.build([e.path for e in entries], encode) == 0  # nothing to redo
    assert len(calls) == 2
    # Crops of cached features match the features of the cropped audio.
    data = AudioDataset(entries, 16000, 320, crop_samples=3200, cache=cache)
    for epoch in range(3):
        data.set_epoch(epoch)
        item = data[0]
        assert torch.allclose(item["feats"], frame_means(item["sig"]), atol=1e-6)
        assert int(item["feats_len"]) == 10
    # A changed file is encoded again; another encoder key uses another folder.
    ramp_file(audio / "b.wav", 0.4)
    os.utime(audio / "b.wav", ns=(1, 1))
    assert cache.build([e.path for e in entries], encode) == 1
    with pytest.raises(CheckpointError, match="no cached features"):
        FeatureCache(tmp_path / "cache", "key2").load(entries[0].path)


def test_feature_only_items(tmp_path):
    ramp_file(tmp_path / "a.wav", 1.0)
    entries = list_entries(tmp_path, None, [".wav"])
    cache = FeatureCache(tmp_path / "cache", "k", dtype="float16")
    cache.build([entries[0].path], lambda p: frame_means(load_audio(p, [16000])[0]))
    data = AudioDataset(
        entries, 16000, 320, crop_samples=3200, cache=cache, load_sig=False
    )
    batch = collate([data[0]])
    assert set(batch) == {"feats", "feats_len", "length"}
    assert batch["feats"].dtype == torch.float32 and batch["feats"].shape == (1, 10, 2)


def test_fingerprint_tracks_weights():
    a = torch.nn.Linear(3, 3)
    key = module_fingerprint(a)
    assert module_fingerprint(a) == key
    with torch.no_grad():
        a.weight[0, 0] += 1.0
    assert module_fingerprint(a) != key


def test_sampler_shards_and_resumes():
    full = EpochBatchSampler(20, 3, seed=1)
    ranks = [EpochBatchSampler(20, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in (full, *ranks):
        s.set_epoch(4)
    assert len(ranks[0]) == len(ranks[1]) == 3
    seen = [i for r in ranks for b in r for i in b]
    assert len(seen) == len(set(seen)) == 18
    # Rank batches interleave the single-process order of batches of 2 * 3.
    single = EpochBatchSampler(20, 6, seed=1)
    single.set_epoch(4)
    for step, batch in enumerate(single):
        assert batch == list(ranks[0])[step] + list(ranks[1])[step]
    # Skipping k batches gives the tail of the epoch.
    batches = list(full)
    full.set_epoch(4, skip=2)
    assert list(full) == batches[2:]
    full.set_epoch(5)
    assert list(full) != batches
    with pytest.raises(ConfigError, match="batch"):
        EpochBatchSampler(3, 2, world_size=2)
