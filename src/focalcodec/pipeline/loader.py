"""Audio for batched encoding: decoded in DataLoader workers, in length-sorted buckets.

Items are sorted by length (longest first) and cut into buckets whose padded size,
items x longest item, stays under a budget of samples (``--batch-seconds``), so a batch
of short clips holds many items and a batch of long ones few, with little padding.
Decoding, downmixing and resampling happen in worker processes while the model runs on
the previous bucket; batches come out zero-padded on the right, with their true lengths,
in pinned memory when a GPU will consume them.

A file that cannot be decoded does not stop the loader: it comes back in the batch's
``errors`` and the rest of the bucket goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import AudioError
from ..files.audio import AudioReader

__all__ = [
    "AudioBatch",
    "AudioDataset",
    "audio_loader",
    "estimate_length",
    "plan_buckets",
]


def estimate_length(path: str | Path, rate: int, duration: float | None = None) -> int:
    """Samples at ``rate`` of an audio file, from its header (the real count: a manifest
    ``duration`` may be wrong, and a long file must never be planned as a short one);
    the manifest ``duration`` only when the header cannot be read, else 0 (the load
    reports the error)."""
    try:
        info = sf.info(str(path))
    except Exception:
        info = None
    if info is not None and info.samplerate > 0:
        return round(info.frames * rate / info.samplerate)
    if duration is not None:
        return max(0, round(float(duration) * rate))
    return 0


def plan_buckets(
    lengths: Sequence[int], max_samples: int, max_items: int | None = None
) -> list[list[int]]:
    """Cut items into buckets of similar length, longest first.

    Parameters
    ----------
    lengths
        Samples per item.
    max_samples
        Budget per bucket: items x longest item (the padded batch) stays at or under
        it, except for a single item longer than the budget, which gets its own bucket.
    max_items
        At most this many items per bucket (None: no limit).

    Returns
    -------
        Buckets of item indices; every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    buckets: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = max_items is not None and len(current) >= max_items
        if current and (full or (len(current) + 1) * max(longest, 1) > max_samples):
            buckets.append(current)
            current = []
        current.append(i)
    if current:
        buckets.append(current)
    return buckets


@dataclass
class AudioBatch:
    """A padded batch of decoded audio.

    Attributes
    ----------
    sig
        Waveforms (B, N), zero-padded on the right, float32.
    lengths
        Real samples per item, (B,) int64.
    indices
        Dataset index of each row.
    errors
        ``(index, exception)`` of the bucket's items that could not be decoded.
    """

    sig: torch.Tensor
    lengths: torch.Tensor
    indices: list[int]
    errors: list[tuple[int, Exception]]

    def pin_memory(self) -> AudioBatch:
        # Called by the DataLoader's pinning thread when pin_memory=True.
        self.sig = self.sig.pin_memory()
        self.lengths = self.lengths.pin_memory()
        return self


class AudioDataset(Dataset):
    """Decode, downmix and resample one file per index, in the worker that asks.

    Parameters
    ----------
    paths
        Audio files.
    sample_rate
        Rate the model expects.
    min_samples
        Shorter audio (after resampling) is reported as too short.
    max_samples
        Longer audio is refused from its header, before it is decoded (a bucket is
        planned for items up to this length); None: any length.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        sample_rate: int,
        min_samples: int,
        max_samples: int | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self.max_samples = max_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | Exception]:
        """``(index, waveform (N,) float32)``, or ``(index, the exception)``."""
        try:
            with AudioReader(self.paths[index], self.sample_rate) as reader:
                longest = self.max_samples
                if longest is not None and reader.num_samples > longest:
                    raise AudioError(
                        f"{self.paths[index]}: {reader.num_samples} samples, more "
                        f"than the {longest} planned for its batch; it was planned "
                        "from a wrong length (a manifest duration?)"
                    )
                # Read whole: the samples load_audio gives, bit for bit.
                sig = reader.read_all()
            if len(sig) < self.min_samples:
                raise AudioError(
                    f"{self.paths[index]}: too short ({len(sig)} samples at "
                    f"{self.sample_rate} Hz); need at least {self.min_samples}"
                )
            return index, sig
        except Exception as exc:
            return index, exc


def collate_padded(items: list[tuple[int, Any]]) -> AudioBatch:
    """Zero-pad the decoded waveforms of a bucket into one (B, N) batch."""
    good = [(i, s) for i, s in items if isinstance(s, np.ndarray)]
    errors = [(i, s) for i, s in items if not isinstance(s, np.ndarray)]
    longest = max((len(s) for _, s in good), default=0)
    sig = torch.zeros(len(good), longest)
    for row, (_, s) in enumerate(good):
        sig[row, : len(s)] = torch.from_numpy(s)
    lengths = torch.tensor([len(s) for _, s in good], dtype=torch.long)
    return AudioBatch(sig, lengths, [i for i, _ in good], errors)


def audio_loader(
    dataset: AudioDataset,
    buckets: list[list[int]],
    *,
    workers: int = 1,
    pin_memory: bool = False,
) -> Iterator[AudioBatch]:
    """Padded batches of ``dataset``, one per bucket, decoded ``workers`` at a time.

    ``workers=0`` decodes in this process (no overlap with the model).
    """
    if not buckets:
        return iter(())
    loader = DataLoader(
        dataset,
        batch_sampler=buckets,
        num_workers=workers,
        collate_fn=collate_padded,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
    )
    return iter(loader)
