"""Token data for the LM: the one place that knows the token store.

Everything the LM reads goes through this adapter over :mod:`focalcodec.tokens.dataset`
(``TokenDataset`` and its packing collate), so a change of store is a change here.

Training batches are items packed into blocks of ``context + 1`` tokens with a separator
between items (and before the first, so every utterance starts after a separator, as
streams do in the entropy coder); the last block is padded with ``PAD`` (never
predicted). Validation uses :class:`Windows`: the validation items joined the same way
and cut into equal windows that overlap by one token, so every token is predicted once
and the mean over windows is the mean over tokens.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import DataError
from ..tokens.dataset import TokenDataset, pack_collate

__all__ = [
    "PAD",
    "LMCollate",
    "Windows",
    "open_tokens",
    "split_items",
    "token_info",
]

PAD = -1  # padding id in blocks: ignored by the loss


def open_tokens(folder: str | os.PathLike) -> TokenDataset:
    """The token folder written by ``focalcodec tokenize`` (or ``write_tokens``)."""
    return TokenDataset(folder)


def token_info(ds: TokenDataset) -> dict[str, Any]:
    """``codebook_size``, ``token_rate`` and ``config_hash`` of a token folder."""
    meta = ds.meta
    if "codebook_size" not in meta:
        raise DataError(f"{ds.folder}: meta.json has no codebook_size")
    return {
        "codebook_size": int(meta["codebook_size"]),
        "token_rate": float(meta.get("token_rate") or 0.0),
        "config_hash": str(meta.get("config_hash") or ""),
    }


def split_items(
    ds: TokenDataset,
    train_split: str | None,
    valid_split: str | None,
    valid_fraction: float,
    seed: int,
) -> tuple[Subset, list[int]]:
    """Training subset and validation item indices.

    With ``valid_split``, validation is the items of that split; otherwise a seeded
    ``valid_fraction`` of the training items is held out (the same on every process).
    """
    splits = [item.get("split") for item in ds.items]
    train = [i for i, s in enumerate(splits) if train_split is None or s == train_split]
    if valid_split is not None:
        valid = [i for i, s in enumerate(splits) if s == valid_split]
    else:
        order = train[:]
        random.Random(seed).shuffle(order)
        valid = sorted(order[: int(round(valid_fraction * len(order)))])
        held = set(valid)
        train = [i for i in train if i not in held]
    if not train:
        raise DataError(
            f"{ds.folder}: no training items (train_split={train_split!r}); the "
            "folder's splits are " + ", ".join(sorted({str(s) for s in splits}))
        )
    return Subset(ds, train), valid


class Windows(Dataset):
    """Equal windows over the concatenated tokens of some items.

    Parameters
    ----------
    ds
        The token dataset.
    indices
        Items to use, in order.
    block_len
        Tokens per window (context + 1); consecutive windows share one token.
    separator
        Separator id, placed before every item.
    max_tokens
        Stop after about this many tokens (None: all).
    """

    def __init__(
        self,
        ds: TokenDataset,
        indices: list[int],
        block_len: int,
        separator: int,
        max_tokens: int | None = None,
    ) -> None:
        pieces, total = [], 0
        for i in indices:
            toks = np.asarray(ds[i]["tokens"], dtype=np.int64)
            pieces += [np.array([separator], dtype=np.int64), toks]
            total += len(toks) + 1
            if max_tokens is not None and total >= max_tokens:
                break
        self.flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        self.block_len = block_len
        self.count = max(0, (len(self.flat) - 1) // (block_len - 1))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * (self.block_len - 1)
        return {"block": torch.from_numpy(self.flat[start : start + self.block_len])}

    @property
    def num_targets(self) -> int:
        """Tokens predicted over all windows."""
        return self.count * (self.block_len - 1)


class LMCollate:
    """Batches for the LM stage: ``{"block": LongTensor (B, block_len)}``.

    Token items (dicts with ``tokens``) are packed by the token store's collate;
    :class:`Windows` items are stacked as they are.

    Parameters
    ----------
    block_len
        Tokens per block (context + 1).
    separator
        Separator id.
    """

    def __init__(self, block_len: int, separator: int) -> None:
        self.separator = separator
        self.pack = pack_collate(block_len, separator, pad=PAD)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "block" in items[0]:
            return {"block": torch.stack([item["block"] for item in items])}
        first = np.concatenate([[self.separator], np.asarray(items[0]["tokens"])])
        return {"block": self.pack([first] + [item["tokens"] for item in items[1:]])}
