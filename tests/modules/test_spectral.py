"""The one spectral module, and the numbers of its users before they shared it.

The expected values below were recorded from the package before losses, discriminators,
evaluation and figures were moved onto :mod:`focalcodec.modules.spectral` (each had its
own STFT and the losses and evaluation each their own mel filterbank); the move must not
change them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focalcodec.eval import figures
from focalcodec.eval import waveform as wf
from focalcodec.modules.spectral import (
    MelSpectrogram,
    log_mel,
    magnitude,
    mel_filterbank,
    stft,
)
from focalcodec.train import discriminators, losses, plots

RATE = 16000
# Recorded values agree to float32 rounding of a sum of thousands of terms.
REL = 1e-6


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A 440 Hz tone in noise (1, 16000) and a noisier copy."""
    gen = torch.Generator().manual_seed(1234)
    t = torch.arange(RATE) / RATE
    noise = 0.05 * torch.randn(RATE, generator=gen)
    sig = (0.3 * torch.sin(2 * math.pi * 440 * t) + noise)[None]
    return sig, sig + 0.02 * torch.randn(1, RATE, generator=gen)


def test_filterbank_orientation_and_recorded_values():
    fbank = mel_filterbank(RATE, 1024, 80)
    assert fbank.shape == (80, 513) and fbank.dtype == torch.float32
    assert float(fbank.double().sum()) == pytest.approx(502.67684260068927, rel=REL)
    # Filter 5 covers bins 8-10 (125-156 Hz), peaking at its mel centre.
    assert fbank[5].nonzero().flatten().tolist() == [8, 9, 10]
    np.testing.assert_allclose(
        fbank[5, 8:11].numpy(), [0.2780369222, 0.8826489449, 0.5276649594], rtol=REL
    )


def test_mel_filterbank_matches_librosa_htk():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(RATE, 1024, 80).numpy()
    ref = librosa.filters.mel(sr=RATE, n_fft=1024, n_mels=80, htk=True, norm=None)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_mel_filterbank_rows_peak_at_one():
    fbank = mel_filterbank(RATE, 2048, 40)
    assert fbank.shape == (40, 1025)
    assert torch.all(fbank.max(dim=1).values > 0.9)
    assert torch.all(fbank >= 0)


def test_stft_matches_a_numpy_reference():
    # Centred frames with reflect padding and a periodic Hann window, by hand.
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    n_fft, hop = 256, 64
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [padded[i : i + n_fft] * window for i in range(0, 1000 + 1, hop)]
    ref = np.abs(np.fft.rfft(np.stack(frames), axis=1)).T
    ours = magnitude(torch.from_numpy(x)[None], n_fft, hop)
    assert ours.shape == (1, n_fft // 2 + 1, 1000 // hop + 1)
    np.testing.assert_allclose(ours[0].numpy(), ref, rtol=1e-4, atol=1e-4)
    # Inputs up to half a window are zero-extended to n_fft // 2 + 1 = 129 samples
    # (3 frames); a window shorter than n_fft is centred in the frame.
    short = stft(torch.ones(1, 100), 256, 64, torch.hann_window(200))
    assert short.shape == (1, 129, 3) and short.dtype == torch.complex64


def test_log_mel_is_floored_natural_log():
    spec = torch.tensor([[[0.0, 1.0], [2.0, math.e]]])  # (1, bins 2, frames 2)
    fbank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    out = log_mel(spec, fbank)
    expected = [
        [math.log(1e-5), 0.0],
        [math.log(2.0), 1.0],
        [0.0, math.log(1.859140914)],
    ]
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-6)


def test_training_log_mel_and_loss_keep_their_values(pair):
    sig, est = pair
    melspec = MelSpectrogram(RATE, 1024, 256, 100)
    out = melspec(torch.cat([sig, est]))
    assert out.shape == (2, 100, 63)
    assert float(out.double().sum()) == pytest.approx(16872.019884565336, rel=REL)
    for index, value in [
        ((0, 10, 20), 0.3843323290348053),
        ((1, 50, 40), 1.6230429410934448),
        ((0, 99, 62), 2.345486879348755),
    ]:
        assert float(out[index]) == pytest.approx(value, rel=REL)
    assert losses.mel_loss(est, sig, melspec).item() == pytest.approx(
        0.14716801047325134, rel=REL
    )
    at_24k = MelSpectrogram(24000, 1024, 256, 100)
    assert losses.mel_loss(est, sig, at_24k).item() == pytest.approx(
        0.15216636657714844, rel=REL
    )
    # Inputs shorter than half a window are zero-extended first (3 frames here; the
    # mel product of so few frames may round differently, within float32).
    short = melspec(sig[:, :300])
    assert short.shape == (1, 100, 3)
    assert float(short.double().sum()) == pytest.approx(402.7241640519351, rel=REL)


def test_resolution_discriminators_see_the_same_spectra(pair):
    sig, est = pair
    torch.manual_seed(0)  # the recorded logits are those of this initialisation
    disc = discriminators.Discriminators()
    logits, _ = disc(torch.cat([sig, est]))
    recorded = [369.36186666507274, 427.0770416193991, -769.4978904705495]
    for out, value in zip(logits[5:], recorded, strict=True):
        assert float(out.detach().double().sum()) == pytest.approx(value, rel=REL)
    short = discriminators.ResolutionDiscriminator(1024, 256, 640)
    out, _ = short(sig[:, :400])
    assert out.shape == (1, 195)


def test_evaluation_distances_keep_their_values(pair):
    sig, est = (x[0].double().numpy() for x in pair)
    assert wf.mel_distance(sig, est) == pytest.approx(0.13371941447257996, rel=REL)
    assert wf.multi_resolution_stft_distance(sig, est) == pytest.approx(
        0.3887380361557007, rel=REL
    )


def test_figure_spectrograms_keep_their_values(pair):
    sig = pair[0][0]
    shown = figures._log_power(sig.numpy())
    assert shown.shape == (257, 126)
    assert float(shown.astype(np.float64).sum()) == pytest.approx(
        -169325.58181875595, rel=REL
    )
    assert float(shown[28, 60]) == pytest.approx(-6.514589786529541, rel=REL)
    plotted = plots.log_spectrogram(sig)
    assert plotted.shape == (257, 126)
    assert float(plotted.double().sum()) == pytest.approx(-169325.5824153868, rel=REL)
    tiny = plots.log_spectrogram(sig[:100])
    assert float(tiny.double().sum()) == pytest.approx(-8402.591684051324, rel=REL)
