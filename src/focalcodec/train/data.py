"""Training data: file lists, splits, on-the-fly resampling, random crops, batching.

Audio comes from a directory tree or a JSONL manifest (one ``{"path": ..., "split": ...}``
object per line, paths relative to the manifest's folder). Every file is decoded with
soundfile, mixed to mono and resampled with soxr to the rates a stage asks for, so the
user's files are only ever read.

Crops start on an encoder-frame boundary (a multiple of ``hop`` input samples). That keeps
a crop of the waveform, of a higher-rate target waveform and of cached whole-utterance
features aligned with each other::

    input  |----hop----|----hop----|----hop----|      crop of crop_samples
    feats  |  frame s  | frame s+1 | frame s+2 |      crop of crop_samples // hop
    target |--hop*r----|--hop*r----|--hop*r----|      r = target_rate / input_rate

The random start of item ``i`` in epoch ``e`` depends only on ``(seed, e, i)``, and the
order of items only on ``(seed, e)``: the data stream is the same whatever the number of
loader workers, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from ..errors import AudioError, ConfigError
from ..files.manifest import Entry, scan
from .cache import FeatureCache

__all__ = [
    "AudioDataset",
    "AudioEntry",
    "EpochBatchSampler",
    "collate",
    "list_entries",
    "load_audio",
    "split_entries",
]


# Training reads its file lists through the package's one manifest scanner.
AudioEntry = Entry


def list_entries(
    source: str | Path, root: str | Path | None, extensions: Sequence[str]
) -> list[Entry]:
    """Entries of a manifest file or a directory (see :func:`focalcodec.files.manifest.scan`)."""
    return scan(source, suffixes=extensions, root=root)


def split_entries(
    entries: Sequence[AudioEntry],
    train_split: str | None,
    valid_split: str | None,
    valid_fraction: float,
    seed: int,
) -> tuple[list[AudioEntry], list[AudioEntry]]:
    """Pick the training and validation entries.

    With ``valid_split`` set, validation uses the entries of that split. Otherwise a
    ``valid_fraction`` of the training entries is held out, chosen by a seeded shuffle so
    every process and every resumed run holds out the same files.

    Returns
    -------
        ``(train, valid)``.
    """

    def pick(split: str | None) -> list[AudioEntry]:
        if split is None:
            return list(entries)
        return [e for e in entries if e.split == split]

    train = pick(train_split)
    if not train:
        hint = ""
        if all(e.split is None for e in entries):
            hint = " (the source has no splits: set data.train_split to null)"
        raise ConfigError(f"data.train_split '{train_split}' selects no files{hint}")
    if valid_split is not None:
        valid = pick(valid_split)
        if not valid:
            raise ConfigError(f"data.valid_split '{valid_split}' selects no files")
        return train, valid
    num_valid = int(round(valid_fraction * len(train)))
    if num_valid == 0:
        return train, []
    if num_valid >= len(train):
        raise ConfigError("data.valid_fraction leaves no training files")
    order = list(range(len(train)))
    random.Random(f"split/{seed}").shuffle(order)
    held = set(order[:num_valid])
    return (
        [e for i, e in enumerate(train) if i not in held],
        [e for i, e in enumerate(train) if i in held],
    )


def load_audio(path: str | Path, sample_rates: Sequence[int]) -> list[torch.Tensor]:
    """Decode a file, mix to mono and resample it to each rate in ``sample_rates``.

    Returns
    -------
        One float32 tensor (N_r,) per requested rate.
    """
    import numpy as np
    import soundfile as sf
    import soxr

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise AudioError(f"cannot read audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise AudioError(f"audio file {path} contains NaN or Inf samples")
    out = []
    for target in sample_rates:
        wav = (
            mono if target == rate else soxr.resample(mono, rate, target, quality="HQ")
        )
        out.append(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)))
    return out


class AudioDataset(Dataset):
    """Crops of audio (and of cached features) at the rates a stage needs.

    Parameters
    ----------
    entries
        Files to read.
    input_rate
        Rate of ``sig`` (the encoder's input rate).
    hop
        Encoder hop in input samples; crops start on multiples of it.
    target_rate
        If given, also return ``target``, the same crop at this rate.
    crop_samples
        Crop length in input samples (a multiple of ``hop``), or None for whole files.
    max_samples
        With ``crop_samples`` None, cut files to at most this many input samples.
    cache
        Feature cache; when given, ``feats`` holds the matching frames.
    load_sig
        Decode the audio. May be False only with a cache: items then hold features
        alone (the quantizer stage trains on nothing else).
    seed
        Seed of the crop positions.
    """

    def __init__(
        self,
        entries: Sequence[AudioEntry],
        input_rate: int,
        hop: int,
        target_rate: int | None = None,
        crop_samples: int | None = None,
        max_samples: int | None = None,
        cache: FeatureCache | None = None,
        load_sig: bool = True,
        seed: int = 0,
    ) -> None:
        if not load_sig and cache is None:
            raise ValueError("load_sig=False needs a feature cache")
        if crop_samples is not None and crop_samples % hop:
            raise ConfigError(
                f"data.crop_samples={crop_samples} must be a multiple of the encoder "
                f"hop ({hop} samples)"
            )
        if target_rate is not None and (hop * target_rate) % input_rate:
            raise ConfigError(
                f"target rate {target_rate} Hz does not divide into whole samples per "
                f"encoder hop ({hop} samples at {input_rate} Hz)"
            )
        self.entries = list(entries)
        self.input_rate = input_rate
        self.hop = hop
        self.target_rate = target_rate
        self.crop_samples = crop_samples
        self.max_samples = max_samples
        self.cache = cache
        self.load_sig = load_sig
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crop positions of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.entries[index]
        feats = self.cache.load(entry.path) if self.cache is not None else None
        item = {}
        if not self.load_sig:
            start, frames = self._choose_frames(None, feats, index)
            item["feats"], item["feats_len"] = _cut(feats, start, frames)
            return item
        rates = [self.input_rate]
        if self.target_rate is not None:
            rates.append(self.target_rate)
        waves = load_audio(entry.path, rates)
        start, frames = self._choose_frames(len(waves[0]), feats, index)
        item["sig"], item["sig_len"] = _cut(
            waves[0], start * self.hop, frames * self.hop
        )
        if self.target_rate is not None:
            per_hop = self.hop * self.target_rate // self.input_rate
            item["target"], item["target_len"] = _cut(
                waves[1], start * per_hop, frames * per_hop
            )
        if feats is not None:
            item["feats"], item["feats_len"] = _cut(feats, start, frames)
        return item

    def _choose_frames(
        self, num_samples: int | None, feats: torch.Tensor | None, index: int
    ) -> tuple[int, int]:
        """First frame and number of frames of this item's crop."""
        avail = num_samples // self.hop if num_samples is not None else feats.shape[0]
        if feats is not None:
            avail = min(avail, feats.shape[0])
        avail = max(avail, 1)
        if self.crop_samples is None:
            frames = avail
            if self.max_samples is not None:
                frames = min(frames, max(self.max_samples // self.hop, 1))
            return 0, frames
        frames = self.crop_samples // self.hop
        last = max(avail - frames, 0)
        rng = random.Random(f"crop/{self.seed}/{self.epoch}/{index}")
        return rng.randint(0, last), frames


def _cut(x: torch.Tensor, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[start:start+size]`` along dim 0, zero-padded to ``size``, with its true length."""
    piece = x[start : start + size]
    valid = piece.shape[0]
    if valid < size:
        pad = piece.new_zeros((size - valid, *piece.shape[1:]))
        piece = torch.cat([piece, pad])
    return piece, torch.tensor(valid, dtype=torch.long)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, right-padding with zeros to the longest one.

    Adds ``length`` (B,) float32, the relative valid length of ``sig`` (or of
    ``feats`` when there is no audio) in the ``FocalCodec`` convention: valid steps
    divided by the padded length.
    """
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if values[0].dim() == 0:
            batch[key] = torch.stack(values)
            continue
        size = max(v.shape[0] for v in values)
        padded = [
            torch.cat([v, v.new_zeros((size - v.shape[0], *v.shape[1:]))])
            for v in values
        ]
        batch[key] = torch.stack(padded)
    key = "sig" if "sig" in batch else "feats"
    batch["length"] = batch[f"{key}_len"].float() / batch[key].shape[1]
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """Seeded, sharded, resumable batches of indices.

    Every epoch shuffles all indices with a generator seeded by ``(seed, epoch)``, drops
    the tail that does not fill ``batch_size * world_size`` items, and gives rank ``r``
    the batches ``r, r + world_size, ...``. ``set_epoch(e, skip=k)`` starts epoch ``e``
    after its first ``k`` batches, which is how a resumed run continues mid-epoch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items < batch_size * world_size:
            raise ConfigError(
                f"only {num_items} training items for data.batch_size={batch_size} on "
                f"{world_size} process(es); lower the batch size or add data"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches each rank gets in a full epoch."""
        return self.num_items // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the order of ``epoch`` and skip its first ``skip`` batches."""
        self.epoch = epoch
        self.skip = skip

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.skip, 0)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        step = self.batch_size * self.world_size
        for b in range(self.skip, self.batches_per_epoch):
            first = b * step + self.rank * self.batch_size
            yield order[first : first + self.batch_size]
