"""On-disk cache of frozen-encoder features, one safetensors file per audio file.

The quantizer and decoder stages only need the encoder's output, and the encoder is
frozen, so its features can be computed once per file instead of once per step. Files
live under ``<cache_dir>/<encoder fingerprint>/``: a different encoder (config or
weights) gets a different folder, so stale features are never mixed in. Each file name
hashes the audio path, size and modification time, so an edited audio file is
re-encoded. Features are computed on the whole utterance; training crops are cut from
them (see :mod:`focalcodec.train.data`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..files.atomic import atomic_write

__all__ = ["FeatureCache", "module_fingerprint"]

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def module_fingerprint(module: nn.Module, extra: str = "") -> str:
    """Short hex digest of a module's parameter names, shapes and values."""
    digest = hashlib.sha1(extra.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Features of whole files, keyed by an encoder fingerprint.

    Parameters
    ----------
    root
        Cache folder (created on demand).
    key
        Encoder fingerprint; names the sub-folder.
    dtype
        Storage dtype name: float32, float16 or bfloat16. Loading returns float32.
    """

    def __init__(self, root: str | Path, key: str, dtype: str = "float32") -> None:
        self.folder = Path(root) / key
        self.dtype = _DTYPES[dtype]

    def path(self, audio_path: str | Path) -> Path:
        """Cache file of one audio file."""
        audio_path = Path(audio_path).resolve()
        stat = audio_path.stat()
        ident = f"{audio_path}|{stat.st_size}|{stat.st_mtime_ns}"
        name = hashlib.sha1(ident.encode()).hexdigest()[:24]
        return self.folder / f"{name}.safetensors"

    def load(self, audio_path: str | Path) -> torch.Tensor:
        """Features of one file, (F, D) float32."""
        from safetensors.torch import load_file

        path = self.path(audio_path)
        try:
            return load_file(str(path))["feats"].float()
        except FileNotFoundError as exc:
            raise CheckpointError(
                f"no cached features for {audio_path} (expected {path}); build the "
                "cache first or set data.cache_features=false"
            ) from exc

    def build(
        self,
        paths: Sequence[str | Path],
        encode: Callable[[Path], torch.Tensor],
        rank: int = 0,
        world_size: int = 1,
        progress: bool = False,
    ) -> int:
        """Compute the features of every file not cached yet.

        Rank ``r`` of ``world_size`` handles files ``r, r + world_size, ...``, so the
        processes of a distributed run share the work; the caller synchronises them
        afterwards. Each file is written atomically, so an interrupted build resumes.

        Parameters
        ----------
        paths
            Audio files.
        encode
            Maps a file to its features (F, D).
        rank, world_size
            This process and the number of processes.
        progress
            Show a progress bar.

        Returns
        -------
            Number of files this process encoded.
        """
        from safetensors.torch import save

        todo = [Path(p) for p in paths[rank::world_size]]
        todo = [p for p in todo if not self.path(p).exists()]
        if not todo:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="caching features", unit="file")
        for audio_path in todo:
            feats = encode(audio_path).detach().to("cpu", self.dtype).contiguous()
            blob = save({"feats": feats}, metadata={"source": os.fspath(audio_path)})
            with atomic_write(self.path(audio_path), force=True) as fileobj:
                fileobj.write(blob)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return len(todo)
