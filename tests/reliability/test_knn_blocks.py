"""kNN matching in bounded pieces: no distance block over KNN_BLOCK values, and the
same neighbours as one whole search.

Before, the whole distance matrix (source frames x bank frames) was built at once: a
77 MB bank and 5 s of audio peaked at 1.9 GB, and 60 s at several GB.
"""

from __future__ import annotations

import pytest
import torch

import focalcodec.modules.knn as knn_module
from focalcodec.modules.knn import KNN_BLOCK, knn


def reference(feats: torch.Tensor, bank: torch.Tensor, topk: int) -> torch.Tensor:
    """Whole-matrix cosine search, written here (no blocks, no cdist)."""
    q = torch.nn.functional.normalize(feats.reshape(-1, feats.shape[-1]), dim=-1)
    c = torch.nn.functional.normalize(bank, dim=-1)
    idx = (1 - q @ c.T).topk(topk, dim=-1, largest=False).indices
    return bank[idx].reshape(*feats.shape[:-1], topk, feats.shape[-1])


@pytest.fixture
def spy(monkeypatch):
    sizes: list[int] = []
    real = knn_module._cosine_distance

    def counted(queries, candidates):
        sizes.append(queries.shape[0] * candidates.shape[0])
        return real(queries, candidates)

    monkeypatch.setattr(knn_module, "_cosine_distance", counted)
    return sizes


@pytest.mark.parametrize(
    "frames, bank_rows",
    [(3000, 6000), (40_000, 300), (200, 60_000)],  # both long, many queries, big bank
)
def test_no_block_exceeds_the_bound_and_neighbours_are_the_whole_searchs(
    spy, frames, bank_rows
):
    gen = torch.Generator().manual_seed(frames)
    bank = torch.randn(bank_rows, 16, generator=gen)
    feats = torch.randn(1, frames, 16, generator=gen)
    got = knn(feats, bank, topk=4)
    assert frames * bank_rows > KNN_BLOCK  # the whole matrix would be over the bound
    assert len(spy) > 1 and max(spy) <= KNN_BLOCK
    want = reference(feats, bank, 4)
    # Random vectors: no ties, so the same rows in the same order.
    assert torch.allclose(got, want)


def test_a_small_search_is_one_block_as_before(spy):
    bank = torch.randn(500, 8)
    feats = torch.randn(2, 50, 8)
    got = knn(feats, bank, topk=3)
    assert spy == [100 * 500] and got.shape == (2, 50, 3, 8)


def test_num_splits_still_splits_the_bank(spy):
    bank = torch.randn(1000, 8)
    feats = torch.randn(1, 20, 8)
    whole = knn(feats, bank, topk=2)
    spy.clear()
    split = knn(feats, bank, topk=2, num_splits=4)
    assert spy == [20 * 250] * 4 and torch.equal(whole, split)
