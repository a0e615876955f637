"""k-nearest-neighbour matching of features, the core of kNN voice conversion.

The distances of every query to every candidate (frames x bank rows) are never held at
once: they are computed in blocks of at most :data:`KNN_BLOCK` values (query rows x
bank rows), so memory stays bounded whatever the lengths. An input whose whole matrix
fits one block is matched in one call, exactly as before; otherwise the blocks are
about square (each call to ``cdist`` copies both of its operands), and the nearest
rows of the bank's pieces are merged as ``num_splits`` does.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from ..errors import InputError
from ..runtime import release_free_memory

__all__ = ["KNN_BLOCK", "check_matching_set", "knn"]

# Distances per block: 8 Mi values, 32 MB per float32 temporary (the cosine distance
# makes a few).
KNN_BLOCK = 1 << 23


def check_matching_set(
    matching_set: Tensor, dim: int, topk: int, *, finite: bool = True
) -> None:
    """Raise :class:`~focalcodec.errors.InputError` unless a kNN search can work.

    Parameters
    ----------
    matching_set
        Candidates, expected shape (M, dim), M >= 1.
    dim
        Width of the features that will be matched.
    topk
        Neighbours per query, expected in [1, M].
    finite
        Also check that every value is finite (a pass over the whole set).
    """
    if not torch.is_tensor(matching_set) or matching_set.dim() != 2:
        shape = tuple(getattr(matching_set, "shape", ()))
        raise InputError(
            f"matching_set must be a tensor of shape (M, {dim}), got {shape or type(matching_set)}; "
            "build it with codec.sig_to_feats or focalcodec.pipeline.banks"
        )
    if matching_set.shape[0] == 0 or matching_set.shape[1] != dim:
        raise InputError(
            f"matching_set must have shape (M, {dim}) with M >= 1, got "
            f"{tuple(matching_set.shape)}; build it with codec.sig_to_feats"
        )
    if not matching_set.is_floating_point():
        raise InputError(
            f"matching_set must be floating point, got {matching_set.dtype}"
        )
    size = matching_set.shape[0]
    if not 1 <= _whole(topk, 0) <= size:
        raise InputError(
            f"topk must be a whole number in [1, {size}] (the size of the matching "
            f"set), got {topk!r}"
        )
    if finite and not bool(torch.isfinite(matching_set).all()):
        raise InputError(
            "matching_set contains NaN or infinite values; rebuild it from clean audio"
        )


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


def _whole(value, default: int) -> int:
    """``value`` as an int if it is a whole number (not a bool), else ``default``."""
    if isinstance(value, bool):
        return default
    try:
        return operator.index(value)
    except TypeError:
        return default


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
        Neighbours per query, in [1, M].
    num_splits
        Search the set in this many pieces to bound the size of the distance matrix; the
        result is the same as a single search.

    Returns
    -------
    Neighbours, shape (..., topk, D).
    """
    check_matching_set(matching_set, feats.shape[-1], topk, finite=False)
    if _whole(num_splits, 0) < 1:
        raise InputError(f"num_splits must be a whole number >= 1, got {num_splits!r}")
    queries = feats.reshape(-1, feats.shape[-1])
    size = matching_set.shape[0]
    rows, step = _block(max(queries.shape[0], 1), size)
    step = min(step, max(size // max(num_splits, 1), 1))
    idx = torch.cat(
        [
            _nearest(queries[start : start + rows], matching_set, topk, step)
            for start in range(0, max(queries.shape[0], 1), rows)
        ]
    )
    neighbours = matching_set[idx]
    return neighbours.reshape(*feats.shape[:-1], idx.shape[-1], feats.shape[-1])


def _block(count: int, size: int) -> tuple[int, int]:
    """(query rows, bank rows) of a distance block of at most KNN_BLOCK values."""
    if count * size <= KNN_BLOCK:
        return count, size
    side = math.isqrt(KNN_BLOCK)
    if count <= side:
        return count, KNN_BLOCK // count
    if size <= side:
        return KNN_BLOCK // size, size
    return side, side


def _piece_nearest(
    queries: Tensor, piece: Tensor, topk: int, many: bool
) -> tuple[Tensor, Tensor]:
    """Distances and indices (Q, k) of the nearest rows of one piece of the set.

    Copies: topk's outputs can be views of a buffer as large as the distance block.
    With ``many`` blocks, the freed blocks are handed back to the system after each
    one: the cosine distance makes several block-sized temporaries, and with two or
    more threads glibc kept their freed pages apart instead of reusing them (3 GB of
    resident memory over a 77 MB bank, measured in ``benchmarks/bench_bounded.py``).
    """
    dist = _cosine_distance(queries, piece)
    d, i = dist.topk(min(topk, piece.shape[0]), dim=-1, largest=False)
    d, i = d.clone(), i.clone()
    del dist
    if many:
        release_free_memory()
    return d, i


def _nearest(queries: Tensor, matching_set: Tensor, topk: int, step: int) -> Tensor:
    """Indices (Q, topk) of the nearest rows, searching the set in pieces of ``step``."""
    size = matching_set.shape[0]
    best_dist, best_idx = [], []
    many = queries.shape[0] * size > KNN_BLOCK
    for offset in range(0, size, step):
        piece = matching_set[offset : offset + step]
        d, i = _piece_nearest(queries, piece, topk, many)
        best_dist.append(d)
        best_idx.append(i + offset)
    dist, idx = torch.cat(best_dist, -1), torch.cat(best_idx, -1)
    if len(best_dist) > 1:
        d, pick = dist.topk(min(topk, size), dim=-1, largest=False)
        idx = idx.gather(-1, pick)
    return idx
