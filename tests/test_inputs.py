"""focalcodec.inputs: the checks and batching rule shared by the torch and ONNX codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcodec.errors import AudioError, InputError
from focalcodec.inputs import check_sig, check_toks, per_item, valid_counts


@pytest.mark.parametrize("kind", [torch.tensor, np.asarray])
def test_check_sig_makes_one_item_a_batch(kind) -> None:
    sig = check_sig(kind([0.1] * 400, dtype=None), minimum=320, sample_rate=16000)
    assert tuple(sig.shape) == (1, 400)


@pytest.mark.parametrize(
    ("sig", "message"),
    [
        (np.zeros((2, 2, 400), np.float32), "downmix"),
        (np.zeros(400, np.int16), "divide by 32768"),
        (torch.zeros(400, dtype=torch.int16), "divide by 32768"),
        (
            np.zeros(100, np.float32),
            "too short: 100 samples, need at least 320 (20 ms)",
        ),
        (np.zeros((0, 400), np.float32), "too short"),
        (np.array([0.0] * 399 + [np.nan], np.float32), "NaN"),
        (torch.tensor([0.0] * 399 + [float("inf")]), "infinite"),
        ([0.0] * 400, "tensor or numpy array"),
    ],
)
def test_check_sig_refuses(sig, message: str) -> None:
    with pytest.raises(
        AudioError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        check_sig(sig, minimum=320, sample_rate=16000)


@pytest.mark.parametrize(
    ("toks", "message"),
    [
        (torch.tensor([[0.5]]), "integer"),
        (torch.tensor([[True]]), "integer"),
        (np.zeros((1, 0), np.int64), "at least one token"),
        (torch.tensor([[3, 8]]), r"\[0, 8\); got values from 3 to 8"),
        (np.array([[-1, 2]]), "from -1 to 2"),
        (np.array([1, 2]), "shape"),  # dims=2 wanted
    ],
)
def test_check_toks_refuses(toks, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_toks(toks, codebook_size=8, dims=2)


def test_check_toks_passes_valid_tokens_through() -> None:
    toks = torch.tensor([[0, 7]])
    assert check_toks(toks, codebook_size=8) is toks


def test_valid_counts() -> None:
    assert valid_counts(None, 2, 10) is None
    assert valid_counts([1.0, 1.0], 2, 10) is None
    assert valid_counts(torch.tensor([1.0, 0.5]), 2, 10) == [10, 5]
    assert valid_counts(np.array([0.26, 1.0]), 2, 10) == [3, 10]
    with pytest.raises(InputError, match="2 entries, got 3"):
        valid_counts([1, 1, 1], 2, 10)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        valid_counts([0.0, 1.0], 2, 10)
    with pytest.raises(InputError, match="leaves 1 of 10 steps, fewer than the 2"):
        valid_counts([0.1, 1.0], 2, 10, minimum=2)
    with pytest.raises(InputError, match="relative lengths"):
        valid_counts(["x", "y"], 2, 10)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_per_item_runs_each_item_on_its_prefix_and_pads(kind: str) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    x = torch.from_numpy(x) if kind == "torch" else x
    seen = []

    def fn(part):
        seen.append(tuple(part.shape))
        return part * 10, part[:, :1]

    out, first = per_item(fn, x, [2, 4, 2])
    assert sorted(seen) == [(1, 4), (2, 2)]  # items 0 and 2 grouped
    expected = [[10, 20, 0, 0], [50, 60, 70, 80], [90, 100, 0, 0]]
    assert np.asarray(out).tolist() == expected
    assert np.asarray(first).tolist() == [[1], [5], [9]]
    assert per_item(lambda p: p + 1, x, None).shape == x.shape
