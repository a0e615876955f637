"""Training losses: feature reconstruction, log-mel L1, hinge GAN and feature matching.

All losses return float32 scalars and are meant to run outside autocast: spectrograms
and squared errors lose too much precision in half floats. The log-mel spectrogram is
:class:`focalcodec.modules.spectral.MelSpectrogram` (re-exported here), the one that
evaluation's mel distance uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..modules.spectral import MelSpectrogram

__all__ = [
    "MelSpectrogram",
    "discriminator_hinge_loss",
    "feature_loss",
    "feature_matching_loss",
    "frame_mask",
    "generator_hinge_loss",
    "mel_loss",
]


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Boolean mask of valid frames.

    Parameters
    ----------
    lengths
        (B,) number of valid frames per item.
    frames
        Padded number of frames F.

    Returns
    -------
        (B, F) mask, True on valid frames.
    """
    steps = torch.arange(frames, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def feature_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Squared L2 distance between feature frames, averaged over valid frames.

    Parameters
    ----------
    pred, target
        (B, F, D) features.
    mask
        (B, F) valid frames, or None for all.
    reduction
        ``"sum"``: squared L2 norm of each frame's error; ``"mean"``: the same divided
        by D (the per-element mean squared error).

    Returns
    -------
        Scalar loss.
    """
    err = (pred.float() - target.float()).pow(2).sum(dim=-1)
    if reduction == "mean":
        err = err / pred.shape[-1]
    if mask is None:
        return err.mean()
    weight = mask.to(err.dtype)
    return (err * weight).sum() / weight.sum().clamp(min=1.0)


def mel_loss(
    pred: torch.Tensor, target: torch.Tensor, melspec: MelSpectrogram
) -> torch.Tensor:
    """Mean absolute difference of log-mel spectrograms of (B, N) waveforms."""
    return F.l1_loss(melspec(pred), melspec(target))


def discriminator_hinge_loss(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Hinge loss of the discriminators, averaged over sub-discriminators.

    Parameters
    ----------
    real, fake
        Logits of each sub-discriminator on real and generated audio.

    Returns
    -------
        ``mean_k [ E relu(1 - D_k(real)) + E relu(1 + D_k(fake)) ]``.
    """
    terms = [
        F.relu(1.0 - r.float()).mean() + F.relu(1.0 + f.float()).mean()
        for r, f in zip(real, fake, strict=True)
    ]
    return torch.stack(terms).mean()


def generator_hinge_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Adversarial loss of the generator, ``mean_k E relu(1 - D_k(fake))``."""
    return torch.stack([F.relu(1.0 - f.float()).mean() for f in fake]).mean()


def feature_matching_loss(
    real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 distance between discriminator activations on real and generated audio.

    The mean absolute difference of every (sub-discriminator, layer) activation map,
    averaged over all maps. Real activations are detached: this loss trains the
    generator only.
    """
    terms = [
        (r.detach().float() - f.float()).abs().mean()
        for rs, fs in zip(real, fake, strict=True)
        for r, f in zip(rs, fs, strict=True)
    ]
    return torch.stack(terms).mean()
