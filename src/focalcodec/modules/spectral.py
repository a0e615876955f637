"""Spectral analysis shared by training, evaluation and figures: STFT and mel filters.

Every spectrogram of the package is computed here, in one convention:

* waveforms are (B, N) or (N,) and are analysed in float32;
* the STFT is centred (``n_fft // 2`` samples of reflect padding on each side), with a
  periodic Hann window of ``win_length`` samples (default ``n_fft``), zero-padded to
  ``n_fft`` by ``torch.stft``; an input too short to reflect is first extended with
  zeros to ``n_fft // 2 + 1`` samples;
* spectra are (..., bins, frames) with ``bins = n_fft // 2 + 1`` and
  ``frames = N // hop_length + 1``;
* mel filterbanks are (mels, bins), so ``fbank @ magnitude`` gives (..., mels, frames).

The Vocos decoder's inverse STFT (its "same"-padded head) lives with the decoder, in
:mod:`focalcodec.modules.vocos`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOG_FLOOR",
    "MelSpectrogram",
    "log_mel",
    "magnitude",
    "mel_filterbank",
    "stft",
]

# Floor of the log-mel magnitude: silent frames do not dominate through log(0).
LOG_FLOOR = 1e-5


def stft(
    sig: Tensor, n_fft: int, hop_length: int, window: Tensor | None = None
) -> Tensor:
    """Complex STFT of waveforms (see the module docstring for the convention).

    Parameters
    ----------
    sig
        Waveforms, shape (B, N) or (N,).
    n_fft, hop_length
        FFT size and hop in samples.
    window
        Analysis window of ``win_length <= n_fft`` samples on ``sig``'s device, or None
        for a periodic Hann window of ``n_fft`` (built on every call: modules keep
        theirs as a buffer).

    Returns
    -------
        Complex64 spectrum, shape (B, n_fft // 2 + 1, N // hop_length + 1) (no batch
        axis for a 1-D input).
    """
    sig = sig.float()
    # Reflect padding needs more samples than half a window; pad short input first.
    if sig.shape[-1] <= n_fft // 2:
        sig = F.pad(sig, (0, n_fft // 2 + 1 - sig.shape[-1]))
    if window is None:
        window = torch.hann_window(n_fft, device=sig.device)
    return torch.stft(
        sig,
        n_fft,
        hop_length=hop_length,
        win_length=window.shape[0],
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )


def magnitude(
    sig: Tensor, n_fft: int, hop_length: int, window: Tensor | None = None
) -> Tensor:
    """``|stft(sig)|``: (B, n_fft // 2 + 1, frames) float32; see :func:`stft`."""
    return stft(sig, n_fft, hop_length, window).abs()


def _hz_to_mel(hz: Tensor) -> Tensor:
    # HTK mel scale.
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """Triangular filters on the HTK mel scale, without area normalisation.

    Parameters
    ----------
    sample_rate
        Sample rate in Hz.
    n_fft
        FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
    n_mels
        Number of filters.
    f_min, f_max
        Frequency range in Hz; ``f_max`` defaults to Nyquist.

    Returns
    -------
        Float32 weights, shape (n_mels, n_fft // 2 + 1): filter m rises from edge m to
        1 at edge m + 1 and falls to zero at edge m + 2 of ``n_mels + 2`` mel-spaced
        edges (computed in float64).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = _hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = _mel_to_hz(
        torch.linspace(lo.item(), hi.item(), n_mels + 2, dtype=torch.float64)
    )
    left, peak, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - left) / (peak - left)
    falling = (right - freqs[None, :]) / (right - peak)
    return torch.minimum(rising, falling).clamp(min=0.0).float()


def log_mel(spec: Tensor, fbank: Tensor) -> Tensor:
    """Natural-log mel magnitudes ``log(max(fbank @ spec, LOG_FLOOR))``.

    Parameters
    ----------
    spec
        Magnitudes, shape (..., bins, frames).
    fbank
        Filters, shape (mels, bins) (:func:`mel_filterbank`).

    Returns
    -------
        Shape (..., mels, frames).
    """
    return torch.matmul(fbank, spec).clamp(min=LOG_FLOOR).log()


class MelSpectrogram(nn.Module):
    """Log-magnitude mel spectrogram, ``log(max(mel, 1e-5))``, of (B, N) waveforms.

    The filters and the Hann window are buffers (not saved), so the module follows its
    owner to a device.

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

    def forward(self, sig: Tensor) -> Tensor:
        """Map (B, N) waveforms to (B, n_mels, T) log-mel frames, T = N // hop + 1."""
        spec = magnitude(sig, self.n_fft, self.hop_length, self.window)
        return log_mel(spec, self.fbank)
