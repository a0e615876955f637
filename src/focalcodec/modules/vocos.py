"""Vocos decoder: ConvNeXt backbone + inverse-STFT head, features -> 16 kHz waveform."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .convnext import ConvNeXtDecoder
from .layers import Linear

__all__ = ["Vocos"]


class ISTFT(nn.Module):
    """Inverse STFT that yields exactly ``hop`` samples per frame.

    ``torch.istft`` with ``center=True`` trims ``n_fft // 2`` per side, which gives
    ``(T - 1) * hop`` samples; here ``(n_fft - hop) // 2`` is trimmed instead ("same"
    padding), so T frames give T * hop samples and a decoder frame maps to one hop.
    The causal variant uses no window and no overlap: each frame contributes the last
    ``hop`` samples of its inverse FFT, so nothing depends on future frames.
    """

    def __init__(self, n_fft: int, hop_length: int, causal: bool) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.causal = causal
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("window_sq", window.square(), persistent=False)

    def forward(self, spec: Tensor) -> Tensor:
        """Complex spectrogram (B, n_fft // 2 + 1, T) -> waveform (B, T * hop)."""
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward")
        batch, _, count = frames.shape
        hop = self.hop_length
        if self.causal:
            return frames[:, -hop:].transpose(1, 2).reshape(batch, count * hop)
        length = (count - 1) * hop + self.n_fft
        trim = (self.n_fft - hop) // 2
        sig = self._overlap_add(frames * self.window[None, :, None], length)
        envelope = self._overlap_add(
            self.window_sq[None, :, None].expand(1, -1, count), length
        )
        return sig[:, trim : length - trim] / envelope[:, trim : length - trim]

    def _overlap_add(self, frames: Tensor, length: int) -> Tensor:
        out = F.fold(
            frames,
            output_size=(1, length),
            kernel_size=(1, self.n_fft),
            stride=(1, self.hop_length),
        )
        return out.reshape(frames.shape[0], length)


class ISTFTHead(nn.Module):
    """Linear projection to log-magnitude and phase, then ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, causal: bool) -> None:
        super().__init__()
        self.proj = Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, causal)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, dim) -> (B, T * hop)."""
        # The spectrum is built in float32 even under bf16/fp16 autocast: complex
        # tensors have no half-precision type there, and the phase needs the bits.
        log_mag, phase = self.proj(x).float().transpose(1, 2).chunk(2, dim=1)
        # The clamp keeps exp() of an untrained or out-of-range frame from exploding.
        mag = torch.exp(log_mag).clamp(max=100.0)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        return self.istft(spec)


class Vocos(ConvNeXtDecoder):
    """Vocos decoder: features (B, T, input_dim) -> waveform (B, T * hop_length).

    ``input_channels`` (alias of ``input_dim``) and ``padding`` (ignored) come from the
    v0.0.1 config schema that the released non-causal checkpoints still use.
    """

    def __init__(
        self,
        input_dim: int = 1024,
        num_layers: int = 8,
        dim: int = 512,
        ffn_dim: int = 1536,
        kernel_size: int = 7,
        layerscale_init: float | None = None,
        n_fft: int = 1024,
        hop_length: int = 320,
        causal: bool = False,
        input_channels: int | None = None,
        padding: int | None = None,
    ) -> None:
        if input_channels is not None:
            warnings.warn(
                "decoder_config 'input_channels' is deprecated; use 'input_dim'",
                DeprecationWarning,
                stacklevel=2,
            )
            input_dim = input_channels
        if padding is not None:
            warnings.warn(
                "decoder_config 'padding' is deprecated and ignored",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(
            input_dim,
            num_layers,
            dim,
            ffn_dim,
            kernel_size,
            layerscale_init,
            hop_length,
            causal,
            causal_pad="replicate",
        )
        self.head = ISTFTHead(dim, n_fft, hop_length, causal)
