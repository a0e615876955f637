"""Bad API inputs are a one-line :class:`~focalcodec.errors.FocalCodecError` that says
what to fix, never NaN audio or a raw library error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.errors import FocalCodecError, InputError
from focalcodec.streaming.longform import decode_long

DIM = 1024  # width of the golden models' features


@pytest.fixture(scope="module", params=["causal_wavenext_50hz", "noncausal_vocos_50hz"])
def codec(request, golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / request.param).eval()


@pytest.fixture(scope="module")
def toks(codec) -> torch.Tensor:
    return torch.randint(
        0, codec.codebook_size, (1, 12), generator=torch.Generator().manual_seed(0)
    )


@pytest.fixture(scope="module")
def bank(codec) -> torch.Tensor:
    with torch.inference_mode():
        return codec.sig_to_feats(0.1 * torch.randn(1, 16000))[0]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert isinstance(exc.value, FocalCodecError) and "\n" not in text.strip()
    return text


@pytest.mark.parametrize("topk", [0, -1, 10_000, 2.5, True, "4", None])
def test_topk_outside_the_matching_set(codec, toks, bank, topk):
    """topk=0 gave all-NaN audio, topk=-1 a raw RuntimeError."""
    with torch.inference_mode(), pytest.raises(InputError) as exc:
        codec.toks_to_sig(toks, matching_set=bank, topk=topk)
    assert f"[1, {len(bank)}]" in one_line(exc)


def test_topk_at_the_edges_works(codec, toks, bank):
    with torch.inference_mode():
        for topk in (1, len(bank), np.int64(3)):
            sig = codec.toks_to_sig(toks, matching_set=bank, topk=topk)
            assert torch.isfinite(sig).all()


@pytest.mark.parametrize("bad", ["nan", "inf", "1d", "3d", "width", "empty", "int"])
def test_matching_set_must_be_finite_2d_and_wide_enough(codec, toks, bank, bad):
    value = {
        "nan": bank.clone().index_fill_(0, torch.tensor([3]), float("nan")),
        "inf": bank.clone().index_fill_(1, torch.tensor([7]), float("inf")),
        "1d": bank[0],
        "3d": bank[None],
        "width": bank[:, :-1],
        "empty": bank[:0],
        "int": bank.long(),
    }[bad]
    with torch.inference_mode(), pytest.raises(InputError) as exc:
        codec.toks_to_sig(toks, matching_set=value)
    one_line(exc)
    with pytest.raises(InputError):
        codec.knn(torch.zeros(1, 3, DIM), value)


def test_streaming_checks_the_matching_set_once(golden_dir):
    codec = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz").eval()
    with torch.inference_mode():
        bank = codec.sig_to_feats(0.1 * torch.randn(1, 16000))[0]
    nan = bank.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        codec.streaming(matching_set=nan)
    with pytest.raises(InputError, match="topk"):
        codec.streaming(matching_set=bank, topk=0)


@pytest.mark.parametrize("shape", [(1, 0), (0, 5), (0, 0), (3, 0)])
def test_empty_tokens(codec, shape):
    """toks_to_sig on an empty token tensor gave a raw RuntimeError."""
    empty = torch.zeros(shape, dtype=torch.long)
    with torch.inference_mode(), pytest.raises(InputError, match="at least one") as exc:
        codec.toks_to_sig(empty)
    one_line(exc)
    with torch.inference_mode(), pytest.raises(InputError):
        codec.codes_to_sig(torch.zeros(*shape, codec.bits_per_token))
    with pytest.raises(InputError):
        decode_long(codec, empty)


@pytest.mark.parametrize("length", [1e-6, 0.001, 0.01])
def test_tiny_relative_lengths(codec, length):
    """A relative length that leaves less than one frame of audio, or no token."""
    sig = 0.1 * torch.randn(2, 16000)
    rel = torch.tensor([1.0, length])
    with torch.inference_mode(), pytest.raises(InputError, match=r"length\[1\]") as exc:
        codec.sig_to_toks(sig, length=rel)
    assert "larger relative length" in one_line(exc)
    toks = torch.zeros(2, 50, dtype=torch.long)
    if length * 50 < 0.5:  # rounds to no token at all
        with torch.inference_mode(), pytest.raises(InputError, match=r"length\[1\]"):
            codec.toks_to_sig(toks, length=rel)


@pytest.mark.parametrize("length", [[float("nan"), 1.0], [0.0, 1.0], [1.5, 1.0], [1.0]])
def test_malformed_lengths(codec, length):
    with torch.inference_mode(), pytest.raises(InputError):
        codec.sig_to_toks(0.1 * torch.randn(2, 16000), length=torch.tensor(length))


def test_good_relative_lengths_still_work(codec):
    sig = 0.1 * torch.randn(2, 16000)
    with torch.inference_mode():
        toks = codec.sig_to_toks(sig, length=torch.tensor([1.0, 0.5]))
        alone = codec.sig_to_toks(sig[1:, :8000])
    np.testing.assert_array_equal(toks[1, : alone.shape[1]], alone[0])
