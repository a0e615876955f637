"""Binary spherical quantizer: bit order, round trips, training path."""

from __future__ import annotations

import math

import pytest
import torch

from focalcodec import ConfigError
from focalcodec.modules.bsq import BinarySphericalQuantizer


@pytest.mark.parametrize("bits", [11, 12, 13, 16])
def test_tokens_codes_round_trip(bits: int) -> None:
    bsq = BinarySphericalQuantizer(2**bits)
    toks = torch.randint(
        0, 2**bits, (3, 40), generator=torch.Generator().manual_seed(bits)
    )
    codes = bsq.toks_to_codes(toks)
    assert codes.shape == (3, 40, bits)
    assert torch.allclose(codes.abs(), torch.full_like(codes, 1 / math.sqrt(bits)))
    assert torch.equal(bsq.codes_to_toks(codes), toks)


def test_msb_first_and_zero_maps_to_negative() -> None:
    bsq = BinarySphericalQuantizer(8)
    lats = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]])
    codes = bsq.lats_to_codes(lats)
    assert torch.equal(
        codes > 0, torch.tensor([[True, False, False], [False, False, True]])
    )
    assert bsq.codes_to_toks(codes).tolist() == [4, 1]


def test_rejects_codebooks_that_are_not_powers_of_two() -> None:
    for size in (0, 1, 1000, 2**33):
        with pytest.raises(ConfigError, match="power of two"):
            BinarySphericalQuantizer(size)


def test_straight_through_gradient() -> None:
    bsq = BinarySphericalQuantizer(16)
    lats = torch.randn(2, 5, 4, requires_grad=True)
    codes = bsq.quantize_ste(lats)
    assert torch.equal(codes.detach(), bsq.lats_to_codes(lats.detach()))
    codes.sum().backward()
    assert torch.equal(lats.grad, torch.ones_like(lats))


def test_entropy_loss_extremes() -> None:
    """Confident, diverse assignments minimise the loss; collapse maximises it."""
    bsq = BinarySphericalQuantizer(2**4)
    all_codes = bsq.codebook * 50  # every code once, very confident
    diverse = bsq.entropy_loss(all_codes[None], temperature=0.01)
    collapsed = bsq.entropy_loss(all_codes[:1].expand(16, -1)[None], temperature=0.01)
    uncertain = bsq.entropy_loss(torch.zeros(1, 16, 4))
    # Diverse + confident: per-sample 0, diversity ln 2 per channel.
    assert diverse.item() == pytest.approx(-math.log(2), abs=1e-4)
    assert collapsed.item() == pytest.approx(0.0, abs=1e-4)
    # Uncertain: per-sample ln 2 and diversity ln 2 cancel.
    assert uncertain.item() == pytest.approx(0.0, abs=1e-6)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, :1] = True
    masked = bsq.entropy_loss(all_codes[None], mask=mask, temperature=0.01)
    assert masked.item() == pytest.approx(0.0, abs=1e-4)
