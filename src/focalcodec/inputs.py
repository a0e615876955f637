"""What the codecs accept: checks of waveforms and tokens, and padded batches.

Shared by :class:`~focalcodec.FocalCodec` (torch tensors) and the ONNX backend (numpy
arrays), so that both refuse the same inputs with the same message.

Padded batches with relative lengths: each item is run at its own true length. The one
rule behind ``length=`` in :class:`~focalcodec.FocalCodec` and in the ONNX
backend: ``length`` (B,) holds the fraction of the time axis that is real for each item;
items are grouped by their number of real steps, each group is run on its valid prefix
only, and the results are zero-padded to the longest. An item therefore gives exactly
what it gives on its own, whatever else is in the batch. Works on torch tensors and on
numpy arrays alike (the ONNX backend runs on numpy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .files.audio import check_waveform

__all__ = [
    "MAX_OUTPUT_SECONDS",
    "check_finite",
    "check_output_length",
    "check_sig",
    "check_toks",
    "output_length",
    "per_item",
    "valid_counts",
]

# Longest output a decoder call may be asked for (a day of audio): an ``output_length``
# beyond it is a mistake or an attack, not a request to allocate terabytes.
MAX_OUTPUT_SECONDS = 24 * 3600


# The one waveform check (a file utility too, so it lives in the leaf ``files.audio``).
check_sig = check_waveform


def output_length(
    num_samples: int, sample_rate_input: int, sample_rate_output: int
) -> int:
    """Output samples that ``num_samples`` input samples decode to, rounded down:
    ``num_samples * sample_rate_output // sample_rate_input``. The one rounding of
    both backends (``codec.output_length``), of files and of streams."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise InputError(f"a sample count must be an integer, got {num_samples!r}")
    if num_samples < 0:
        raise InputError(f"a sample count cannot be negative, got {num_samples}")
    return int(num_samples) * int(sample_rate_output) // int(sample_rate_input)


def check_output_length(value: Any, sample_rate: int) -> int | None:
    """An ``output_length`` argument: None, or a whole number of samples in
    [1, :data:`MAX_OUTPUT_SECONDS` * ``sample_rate``]; else
    :class:`~focalcodec.errors.InputError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(
            f"output_length must be a whole number of samples, got {value!r}"
        )
    limit = MAX_OUTPUT_SECONDS * int(sample_rate)
    if not 1 <= value <= limit:
        raise InputError(
            f"output_length={value} is impossible: give 1 to {limit} samples "
            f"({MAX_OUTPUT_SECONDS // 3600} hours at {sample_rate} Hz)"
        )
    return int(value)


def check_finite(x: Any, what: str) -> Any:
    """``x`` (a tensor or array the model made), unless it holds NaN or infinity:
    then :class:`~focalcodec.errors.InputError`, rather than tokens or audio that
    are silently garbage (one input sample at 1e30 makes every latent NaN, and every
    token 0). One pass over ``x``: cheap next to the network that made it."""
    finite = x.isfinite().all() if torch.is_tensor(x) else np.isfinite(x).all()
    if not bool(finite):
        raise InputError(
            f"the {what} hold NaN or infinite values: the input is far beyond full "
            "scale (audio must lie in [-1, 1]) or the model's weights are broken"
        )
    return x


def check_toks(toks: Any, codebook_size: int, dims: int | None = None) -> Any:
    """Integer tokens (tensor or numpy array, ``dims`` dimensions when given), each in
    [0, codebook_size), at least one; otherwise :class:`~focalcodec.errors.InputError`."""
    is_tensor = torch.is_tensor(toks)
    if not (is_tensor or isinstance(toks, np.ndarray)):
        raise InputError(f"tokens must be a tensor of shape (B, L), got {type(toks)}")
    integer = (
        not (toks.is_floating_point() or toks.is_complex() or toks.dtype == torch.bool)
        if is_tensor
        else np.issubdtype(toks.dtype, np.integer)
    )
    if not integer or toks.ndim < 1 or (dims is not None and toks.ndim != dims):
        raise InputError(
            f"tokens must be an integer tensor of shape (B, L), got {toks.dtype} "
            f"{tuple(toks.shape)}"
        )
    if (toks.numel() if is_tensor else toks.size) == 0:
        raise InputError(
            f"tokens have shape {tuple(toks.shape)}: give at least one token per "
            "item to decode"
        )
    low, high = int(toks.min()), int(toks.max())
    if low < 0 or high >= codebook_size:
        raise InputError(
            f"tokens must lie in [0, {codebook_size}); got values from {low} to {high}"
        )
    return toks


def valid_counts(
    length: Any, batch: int, total: int, minimum: int = 1
) -> list[int] | None:
    """Real time steps per item, or None when every item is full length.

    ``length`` is anything array-like with ``batch`` values in (0, 1]. An item whose
    relative length leaves fewer than ``minimum`` of the ``total`` steps is an
    :class:`~focalcodec.errors.InputError`, not a silently widened item.
    """
    if length is None:
        return None
    if torch.is_tensor(length):
        length = length.detach().float().cpu().numpy()
    try:
        rel = np.asarray(length, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(
            f"length must be a tensor of {batch} relative lengths in (0, 1]"
        ) from None
    if rel.size != batch:
        raise InputError(f"length must have {batch} entries, got {rel.size}")
    if not bool(((rel > 0) & (rel <= 1)).all()):
        raise InputError("length values must be relative lengths in (0, 1]")
    counts = [min(total, round(float(v) * total)) for v in rel]
    for i, n in enumerate(counts):
        if n < minimum:
            raise InputError(
                f"length[{i}]={float(rel[i]):.3g} leaves {n} of {total} steps, "
                f"fewer than the {minimum} needed: give that item a larger relative "
                "length or leave it out of the batch"
            )
    return None if all(n == total for n in counts) else counts


def per_item(fn: Callable, x: Any, counts: list[int] | None) -> Any:
    """``fn`` on each item's first ``counts[i]`` steps of ``x`` (B, T, ...), grouped
    by count; outputs (one array or a tuple of them, each (B', T', ...)) zero-padded
    along time to the longest and put back in batch order. ``counts=None`` runs
    ``fn(x)`` once."""
    if counts is None:
        return fn(x)
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(counts):
        groups.setdefault(n, []).append(i)
    parts = [(idx, fn(_contiguous(x[idx, :n]))) for n, idx in groups.items()]
    single = not isinstance(parts[0][1], tuple)
    outs = [(out,) if single else out for _, out in parts]
    merged = tuple(
        _scatter([o[k] for o in outs], [idx for idx, _ in parts], len(counts))
        for k in range(len(outs[0]))
    )
    return merged[0] if single else merged


def _contiguous(x: Any) -> Any:
    # ONNX Runtime wants C-ordered arrays; torch slices are fine as they are.
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x


def _scatter(pieces: list[Any], indices: list[list[int]], batch: int) -> Any:
    """Pieces (B_g, T_g, ...) at rows ``indices[g]`` of a zero (batch, max T_g, ...)."""
    steps = max(p.shape[1] for p in pieces)
    shape = (batch, steps, *pieces[0].shape[2:])
    first = pieces[0]
    if isinstance(first, np.ndarray):
        out = np.zeros(shape, dtype=first.dtype)
    else:
        out = first.new_zeros(shape)
    for piece, idx in zip(pieces, indices):
        out[idx, : piece.shape[1]] = piece
    return out
