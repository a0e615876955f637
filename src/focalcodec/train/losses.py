"""Training losses: feature reconstruction, log-mel L1, hinge GAN and feature matching.

All losses return float32 scalars and are meant to run outside autocast: spectrograms
and squared errors lose too much precision in half floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MelSpectrogram",
    "discriminator_hinge_loss",
    "feature_loss",
    "feature_matching_loss",
    "frame_mask",
    "generator_hinge_loss",
    "mel_filterbank",
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


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    # HTK mel scale.
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, without area normalisation.

    Returns
    -------
        (n_fft // 2 + 1, n_mels) weights; filter m rises from edge m to its peak at edge
        m + 1 and falls to zero at edge m + 2 of ``n_mels + 2`` mel-spaced edges.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = _hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = _mel_to_hz(
        torch.linspace(lo.item(), hi.item(), n_mels + 2, dtype=torch.float64)
    )
    left, peak, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - left[None]) / (peak - left)[None]
    falling = (right[None] - freqs[:, None]) / (right - peak)[None]
    return torch.minimum(rising, falling).clamp(min=0.0).float()


class MelSpectrogram(nn.Module):
    """Log-magnitude mel spectrogram, ``log(max(mel, 1e-5))``.

    The STFT is centred with reflect padding and a periodic Hann window of ``n_fft``.

    Parameters
    ----------
    sample_rate
        Rate of the input waveform.
    n_fft, hop_length, n_mels, f_min, f_max
        STFT and filterbank settings.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 100,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        fbank = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, sig: torch.Tensor) -> torch.Tensor:
        """Map (B, N) waveforms to (B, n_mels, T) log-mel frames, T = N // hop + 1."""
        sig = sig.float()
        # Reflect padding needs more samples than half a window; pad short input first.
        if sig.shape[-1] <= self.n_fft // 2:
            sig = F.pad(sig, (0, self.n_fft // 2 + 1 - sig.shape[-1]))
        spec = torch.stft(
            sig,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()
        mel = torch.einsum("bft,fm->bmt", spec, self.fbank)
        return mel.clamp(min=1e-5).log()


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
