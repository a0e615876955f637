"""Binary spherical quantizer (BSQ): latents on the unit sphere -> signs -> token ids.

A latent of C channels is quantized to the nearest corner of the hypercube scaled onto the
sphere, i.e. every channel becomes +-1/sqrt(C). The C signs, read most significant bit first,
are the token id, so a 13-channel latent gives a 13-bit token (8192 codes).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["BinarySphericalQuantizer"]


class BinarySphericalQuantizer(nn.Module):
    """Tokens <-> codes for ``log2(codebook_size)``-bit BSQ, plus the training path.

    Parameters
    ----------
    codebook_size
        A power of two between 2 and 2**31 (11 to 16 bits in the released models).
    """

    def __init__(self, codebook_size: int = 4096) -> None:
        super().__init__()
        dim = int(math.log2(codebook_size)) if codebook_size > 0 else 0
        if codebook_size < 2 or 2**dim != codebook_size or dim > 31:
            raise ConfigError(
                f"quantizer_config: codebook_size must be a power of two between 2 and "
                f"2**31, got {codebook_size}"
            )
        self.codebook_size = codebook_size
        self.dim = dim
        scale = torch.tensor(1.0 / math.sqrt(dim))
        # Most significant bit first: channel 0 carries 2**(dim-1).
        weights = 2 ** torch.arange(dim - 1, -1, -1, dtype=torch.long)
        self.register_buffer("codebook_value", scale, persistent=False)
        self.register_buffer("mask", weights, persistent=False)

    @property
    def codebook(self) -> Tensor:
        """Every code, row i being the code of token i, shape (codebook_size, dim)."""
        ids = torch.arange(self.codebook_size, device=self.mask.device)
        return self.toks_to_codes(ids)

    def lats_to_codes(self, lats: Tensor) -> Tensor:
        """(..., dim) latents -> (..., dim) codes of +-1/sqrt(dim); exactly 0 maps to -."""
        value = self.codebook_value.to(lats.dtype)
        return torch.where(lats > 0, value, -value)

    def codes_to_toks(self, codes: Tensor) -> Tensor:
        """(..., dim) codes (or latents) -> (...) int64 token ids."""
        return ((codes > 0).long() * self.mask).sum(-1)

    lats_to_toks = codes_to_toks

    def toks_to_codes(self, toks: Tensor) -> Tensor:
        """(...) int64 token ids -> (..., dim) codes."""
        bits = torch.div(toks.unsqueeze(-1), self.mask, rounding_mode="floor") % 2
        value = self.codebook_value
        return (2 * bits.to(value.dtype) - 1) * value

    def forward(self, lats: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, dim) normalised latents -> (toks (B, L), codes (B, L, dim))."""
        codes = self.lats_to_codes(lats)
        return self.codes_to_toks(codes), codes

    # -- training path ---------------------------------------------------------------

    def quantize_ste(self, lats: Tensor) -> Tensor:
        """Codes whose gradient flows straight through to ``lats`` (B, L, dim)."""
        return lats + (self.lats_to_codes(lats) - lats).detach()

    def entropy_loss(
        self,
        lats: Tensor,
        mask: Tensor | None = None,
        temperature: float = 1.0,
        diversity_weight: float = 1.0,
    ) -> Tensor:
        """BSQ entropy regulariser: per-sample entropy minus codebook diversity.

        The soft assignment ``q(c | u) ~ exp(2 u.c / temperature)`` factorises over the
        channels because codes are products of independent signs, so both entropies are
        sums of per-channel binary entropies (exact, no 2**dim enumeration).

        Parameters
        ----------
        lats
            Normalised latents, shape (B, L, dim).
        mask
            Optional (B, L) boolean mask of valid frames.
        temperature
            Softness of the assignment.
        diversity_weight
            Weight of the codebook (batch-marginal) entropy that is subtracted.

        Returns
        -------
        Scalar loss, in nats per channel.
        """
        logits = 4.0 * lats * self.codebook_value.to(lats.dtype) / temperature
        p = torch.sigmoid(logits).reshape(-1, self.dim)
        if mask is not None:
            p = p[mask.reshape(-1)]
        per_sample = _binary_entropy(p).sum(-1).mean()
        diversity = _binary_entropy(p.mean(0)).sum()
        return (per_sample - diversity_weight * diversity) / self.dim


def _binary_entropy(p: Tensor) -> Tensor:
    eps = 1e-8
    return -(p * (p + eps).log() + (1 - p) * (1 - p + eps).log())
