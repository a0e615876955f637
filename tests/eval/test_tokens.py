"""Code usage and normalised entropy on token sets whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focalcodec.eval.base import EvalError
from focalcodec.eval.tokens import TokenStats, code_usage, normalized_entropy


def test_uniform_over_all_codes_is_full_usage_and_entropy_one():
    stats = TokenStats(8)
    stats.append(np.tile(np.arange(8), 5))
    out = stats.summarize()
    assert out["code_usage"] == 1.0
    assert out["norm_entropy"] == pytest.approx(1.0, abs=1e-12)
    assert out["entropy_bits"] == pytest.approx(3.0, abs=1e-12)


def test_single_code_has_zero_entropy_and_one_over_k_usage():
    stats = TokenStats(1024)
    stats.append(np.full((2, 50), 7))
    out = stats.summarize()
    assert out["code_usage"] == pytest.approx(1 / 1024)
    assert out["norm_entropy"] == 0.0
    assert out["entropy_bits"] == 0.0


def test_half_the_codes_equally_used_gives_known_values():
    # 2 of 4 codes, equal counts: H = 1 bit, max = 2 bits.
    counts = np.array([5, 0, 5, 0])
    assert code_usage(counts) == 0.5
    assert normalized_entropy(counts) == pytest.approx(0.5)


def test_skewed_distribution_matches_hand_computed_entropy():
    # p = (1/2, 1/4, 1/4, 0): H = 1.5 bits over log2(4) = 2.
    counts = np.array([2, 1, 1, 0])
    assert normalized_entropy(counts) == pytest.approx(0.75)
    assert code_usage(counts) == 0.75


def test_appending_in_pieces_equals_appending_at_once():
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 64, size=(3, 100))
    whole, pieces = TokenStats(64), TokenStats(64)
    whole.append(toks)
    for row in toks:
        pieces.append(torch.from_numpy(row))
    assert np.array_equal(whole.counts, pieces.counts)
    assert whole.total == 300


def test_empty_statistics_are_nan():
    out = TokenStats(16).summarize()
    assert math.isnan(out["code_usage"]) and math.isnan(out["norm_entropy"])


@pytest.mark.parametrize("bad", [np.array([0, 16]), np.array([-1]), np.array([0.5])])
def test_out_of_range_or_float_ids_are_rejected(bad):
    with pytest.raises(EvalError):
        TokenStats(16).append(bad)
