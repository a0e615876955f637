"""Tokens and features of the probe data, computed once per (model, audio file).

Both caches live under one root (``--cache-dir``), in a folder per model named by
:func:`model_key` (the architecture hash and a digest of every weight, so a trained
codec and a random-weight copy of its architecture never share files):

* ``tokens/<model key>/``: a token folder (:mod:`focalcodec.tokens.dataset`, the format
  of ``focalcodec tokenize``), one item per audio file;
* ``features/<model key>-qfeats/``: one safetensors file per audio file with the
  decompressed features of its tokens (``toks_to_qfeats``), written atomically.

Items are keyed by the audio file (resolved path, size and modification time), not by
the manifest, so every manifest, probe and run that lists a file reuses its tokens.
:func:`encode_tokens` is the one place that reads and writes token folders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import runtime as distributed
from ..codec import FocalCodec
from ..errors import FormatError
from ..files.audio import load_audio
from ..files.manifest import Entry
from ..pipeline import models
from ..train.cache import FeatureCache, module_fingerprint

__all__ = ["encode_features", "encode_tokens", "file_key", "load_codec", "model_key"]

RANDOM_PREFIX = "random:"


def load_codec(spec: str, device: torch.device, seed: int = 0) -> FocalCodec:
    """A codec for ``--model``: a name, Hub id or folder, or ``random:SOURCE``.

    ``random:SOURCE`` builds the architecture of ``SOURCE`` with random weights
    (seeded), the baseline that shows how much of a probe's score training put there.
    Loading is :func:`focalcodec.pipeline.models.load_codec`'s.
    """
    if not spec.startswith(RANDOM_PREFIX):
        return models.load_codec(spec, device)
    torch.manual_seed(seed)
    codec = models.load_codec(spec[len(RANDOM_PREFIX) :], device, weights=False)
    codec.model_id = spec
    return codec


def model_key(codec: FocalCodec) -> str:
    """Cache folder name of a codec: architecture hash + weight digest."""
    return f"{codec.config_hash()}-{module_fingerprint(codec)}"


def file_key(path: str | Path) -> str:
    """Cache key of one audio file (its path, size and modification time)."""
    return FeatureCache("", "").path(path).stem


def _progress(total: int, desc: str, show: bool):
    if not show or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file")


@torch.inference_mode()
def encode_tokens(
    codec: FocalCodec,
    entries: Sequence[Entry],
    cache_root: str | Path,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Tokens of every entry, encoding only the files not cached yet.

    Call on every process of a run: each encodes the files it owns
    (:func:`focalcodec.tokens.dataset.owner_rank`), then rank 0 merges them into the token
    folder and everyone reads it back.

    Parameters
    ----------
    codec
        The model, in eval mode, on its device.
    entries
        Audio files to encode.
    cache_root
        Root of the probe caches.
    rank, world_size
        This process and the number of processes.
    progress
        Show a progress bar while encoding.

    Returns
    -------
        :func:`file_key` -> tokens (L,) int64 for every entry.
    """
    from ..tokens.dataset import (
        TokenDataset,
        TokenWriter,
        finish,
        open_folder,
        owner_rank,
        token_meta,
    )

    folder = Path(cache_root) / "tokens" / model_key(codec)
    keys = {file_key(e.path): e for e in entries}
    if rank == 0:
        # Named by the weights, not by how --model spelled the source.
        meta = {**token_meta(codec), "model_name": model_key(codec)}
        try:
            open_folder(folder, meta)
        except FormatError:
            # A cache of an older format, or damaged: it is only a cache, rebuild it.
            open_folder(folder, meta, force=True)
    distributed.barrier()

    def owns(item_id: str) -> bool:
        return owner_rank(item_id, world_size) == rank

    writer = TokenWriter(folder, rank=rank, owns=owns)
    todo = [key for key in keys if owns(key) and key not in writer.done]
    bar = _progress(len(todo), "encoding tokens", progress)
    device = next(codec.parameters()).device
    try:
        for key in todo:
            sig = load_audio(keys[key].path, codec.sample_rate_input).sig
            toks = codec.sig_to_toks(torch.from_numpy(sig)[None].to(device))[0]
            writer.add({"id": key, "path": str(keys[key].path)}, toks.cpu())
            if bar is not None:
                bar.update()
    finally:
        writer.flush()
        if bar is not None:
            bar.close()
    distributed.barrier()
    if rank == 0:
        finish(folder)
    distributed.barrier()
    data = TokenDataset(folder)
    return {
        item["id"]: data[i]["tokens"]
        for i, item in enumerate(data.items)
        if item["id"] in keys
    }


@torch.inference_mode()
def encode_features(
    codec: FocalCodec,
    entries: Sequence[Entry],
    tokens: dict[str, np.ndarray],
    cache_root: str | Path,
    dtype: str = "float16",
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> Callable[[str | Path], torch.Tensor]:
    """Cache the decompressed features of every entry; returns their loader.

    Features are made from the cached tokens (``toks_to_qfeats``), so the audio is not
    read again. Processes of a distributed run share the work (rank ``r`` handles
    files ``r, r + world_size, ...``); the caller synchronises them afterwards.

    Returns
    -------
        A function mapping an audio path to its features (F, D) float32.
    """
    cache = FeatureCache(
        Path(cache_root) / "features", model_key(codec) + "-qfeats", dtype
    )
    device = next(codec.parameters()).device

    def qfeats(path: Path) -> torch.Tensor:
        toks = torch.from_numpy(tokens[file_key(path)]).to(device)
        return codec.toks_to_qfeats(toks[None])[0]

    cache.build([e.path for e in entries], qfeats, rank, world_size, progress)
    return cache.load
