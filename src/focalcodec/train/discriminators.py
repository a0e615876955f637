"""Discriminators of the decoder stage: multi-period and multi-resolution.

* A period discriminator folds the waveform into a 2-D grid of ``period`` columns, so its
  (k, 1) convolutions compare samples exactly one period apart: it judges periodic
  structure (pitch harmonics) that a 1-D receptive field sees only blurred.
* A resolution discriminator looks at an STFT magnitude at one time/frequency trade-off;
  several resolutions together penalise artefacts that a single STFT size would hide.

Every sub-discriminator returns its logits and the list of its hidden activations (for
the feature-matching loss). Convolutions use weight normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..modules.spectral import magnitude

__all__ = [
    "Discriminators",
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
]

_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """Judge a waveform folded into rows of ``period`` samples.

    Parameters
    ----------
    period
        Fold width in samples.
    channels
        Output channels of the strided convolutions; the last width is kept for one
        more unstrided convolution before the 1-channel output.
    kernel_size, stride
        Time kernel and stride of the strided convolutions.
    """

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = (32, 128, 512, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__()
        self.period = period
        pad = ((kernel_size - 1) // 2, 0)
        layers = []
        prev = 1
        for ch in channels:
            conv = nn.Conv2d(prev, ch, (kernel_size, 1), (stride, 1), padding=pad)
            layers.append(weight_norm(conv))
            prev = ch
        layers.append(weight_norm(nn.Conv2d(prev, prev, (kernel_size, 1), 1, pad)))
        self.layers = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(prev, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Map (B, N) audio to logits (B, T'·period) and hidden activations."""
        rest = sig.shape[-1] % self.period
        if rest:
            # Reflect so the last row continues the signal instead of adding silence.
            sig = F.pad(sig[:, None], (0, self.period - rest), mode="reflect")[:, 0]
        x = sig.reshape(sig.shape[0], 1, -1, self.period)
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _SLOPE)
            feats.append(x)
        x = self.output(x)
        feats.append(x)
        return x.flatten(1), feats


class ResolutionDiscriminator(nn.Module):
    """Judge the STFT magnitude of a waveform at one resolution.

    Parameters
    ----------
    n_fft, hop_length, win_length
        STFT settings (Hann window of ``win_length``;
        :func:`focalcodec.modules.spectral.stft`).
    channels
        Width of every convolution.
    """

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int, channels: int = 32
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        # Wide kernels along frequency with stride 2 shrink the bins; time keeps its rate.
        specs = [(1, (3, 9), (1, 1))] + [(channels, (3, 9), (1, 2))] * 3
        specs.append((channels, (3, 3), (1, 1)))
        layers = []
        for prev, kernel, stride in specs:
            pad = (kernel[0] // 2, kernel[1] // 2)
            layers.append(weight_norm(nn.Conv2d(prev, channels, kernel, stride, pad)))
        self.layers = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(channels, 1, (3, 3), 1, (1, 1)))

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Map (B, N) audio to logits (B, frames·bins') and hidden activations."""
        spec = magnitude(sig, self.n_fft, self.hop_length, self.window)
        # (B, bins, frames) -> (B, 1, frames, bins): time is the convolution's height.
        x = spec.transpose(1, 2)[:, None]
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _SLOPE)
            feats.append(x)
        x = self.output(x)
        feats.append(x)
        return x.flatten(1), feats


class Discriminators(nn.Module):
    """All sub-discriminators of the decoder stage, run on the same waveform.

    Parameters
    ----------
    periods
        One period discriminator per entry.
    period_channels
        Channels of the period discriminators.
    resolutions
        One resolution discriminator per ``[n_fft, hop_length, win_length]``.
    resolution_channels
        Width of the resolution discriminators.
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        period_channels: Sequence[int] = (32, 128, 512, 1024),
        resolutions: Sequence[Sequence[int]] = (
            (512, 128, 512),
            (1024, 256, 1024),
            (2048, 512, 2048),
        ),
        resolution_channels: int = 32,
    ) -> None:
        super().__init__()
        subs: list[nn.Module] = [
            PeriodDiscriminator(p, period_channels) for p in periods
        ]
        subs += [
            ResolutionDiscriminator(n, h, w, resolution_channels)
            for n, h, w in resolutions
        ]
        if not subs:
            raise ValueError(
                "at least one period or resolution discriminator is needed"
            )
        self.subs = nn.ModuleList(subs)

    def forward(
        self, sig: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Run every sub-discriminator on (B, N) audio.

        Returns
        -------
            ``(logits, activations)``: one logits tensor (B, *) and one activation list
            per sub-discriminator.
        """
        logits, feats = [], []
        for sub in self.subs:
            out, hidden = sub(sig)
            logits.append(out)
            feats.append(hidden)
        return logits, feats
