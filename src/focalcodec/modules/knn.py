"""k-nearest-neighbour matching of features, the core of kNN voice conversion."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["knn"]


def _cosine_distance(queries: Tensor, candidates: Tensor) -> Tensor:
    """Cosine distance (Q, M) via Euclidean algebra.

    The distance goes through ``cdist`` rather than a plain matmul on purpose: it is how the
    released code computes it, and near-ties between neighbours depend on the rounding.
    """
    q_sq = queries.pow(2).sum(-1, keepdim=True)
    c_sq = candidates.pow(2).sum(-1, keepdim=True).T
    euclid = torch.cdist(queries[None], candidates[None])[0]
    dot = (q_sq + c_sq - euclid.pow(2)) / 2
    return 1 - dot * torch.rsqrt(q_sq * c_sq)


def knn(
    feats: Tensor, matching_set: Tensor, topk: int = 4, num_splits: int = 1
) -> Tensor:
    """Closest ``topk`` rows of ``matching_set`` for every feature vector.

    Parameters
    ----------
    feats
        Queries, shape (..., D).
    matching_set
        Candidates, shape (M, D), e.g. encoder features of a target speaker.
    topk
        Neighbours per query (at most M).
    num_splits
        Search the set in this many pieces to bound the size of the distance matrix; the
        result is the same as a single search.

    Returns
    -------
    Neighbours, shape (..., k, D) with k = min(topk, M).
    """
    queries = feats.reshape(-1, feats.shape[-1])
    size = matching_set.shape[0]
    step = max(size // max(num_splits, 1), 1)
    best_dist, best_idx = [], []
    for offset in range(0, size, step):
        piece = matching_set[offset : offset + step]
        dist = _cosine_distance(queries, piece)
        d, i = dist.topk(min(topk, piece.shape[0]), dim=-1, largest=False)
        best_dist.append(d)
        best_idx.append(i + offset)
    dist, idx = torch.cat(best_dist, -1), torch.cat(best_idx, -1)
    if len(best_dist) > 1:
        d, pick = dist.topk(min(topk, size), dim=-1, largest=False)
        idx = idx.gather(-1, pick)
    neighbours = matching_set[idx]
    return neighbours.reshape(*feats.shape[:-1], idx.shape[-1], feats.shape[-1])
