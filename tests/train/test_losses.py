"""Training losses and discriminators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focalcodec.modules.spectral import mel_filterbank
from focalcodec.train.discriminators import (
    Discriminators,
    PeriodDiscriminator,
    ResolutionDiscriminator,
)
from focalcodec.train.losses import (
    MelSpectrogram,
    discriminator_hinge_loss,
    feature_loss,
    feature_matching_loss,
    frame_mask,
    generator_hinge_loss,
    mel_loss,
)


def test_feature_loss_matches_numpy_and_ignores_padding():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 3, generator=gen)
    target = torch.randn(2, 5, 3, generator=gen)
    lengths = torch.tensor([5, 2])
    mask = frame_mask(lengths, 5)
    p, t = pred.numpy(), target.numpy()
    frames = [((p[0, f] - t[0, f]) ** 2).sum() for f in range(5)]
    frames += [((p[1, f] - t[1, f]) ** 2).sum() for f in range(2)]
    expected_sum = np.mean(frames)
    got = feature_loss(pred, target, mask, reduction="sum")
    assert got.item() == pytest.approx(expected_sum, rel=1e-6)
    got_mean = feature_loss(pred, target, mask, reduction="mean")
    assert got_mean.item() == pytest.approx(expected_sum / 3, rel=1e-6)
    # Padded frames do not count.
    noisy = pred.clone()
    noisy[1, 2:] += 100.0
    assert feature_loss(noisy, target, mask).item() == pytest.approx(got_mean.item())


def test_mel_filterbank_peaks_on_the_mel_grid():
    fb = mel_filterbank(16000, 1024, 40, 0.0, None).T
    assert fb.shape == (513, 40)
    assert torch.all(fb >= 0) and torch.all(fb <= 1)
    # HTK mel centres, computed independently with numpy.
    mels = np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 42)
    centres = 700 * (10 ** (mels[1:-1] / 2595) - 1)
    bin_hz = 16000 / 1024
    peaks = fb.argmax(dim=0).numpy() * bin_hz
    assert np.all(np.abs(peaks - centres) <= bin_hz)


def test_mel_spectrogram_of_a_tone():
    rate = 16000
    t = torch.arange(rate) / rate
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    melspec = MelSpectrogram(rate, n_fft=1024, hop_length=256, n_mels=64)
    out = melspec(tone[None])
    assert out.shape == (1, 64, rate // 256 + 1)
    fb = mel_filterbank(rate, 1024, 64, 0.0, None)
    strongest = int(out[0, :, 10:-10].mean(dim=1).argmax())
    peak_hz = float(fb[strongest].argmax()) * rate / 1024
    assert abs(peak_hz - 1000.0) < 100.0
    assert mel_loss(tone[None], tone[None], melspec).item() == 0.0


def test_hinge_losses_by_hand():
    two = [torch.full((3, 4), 2.0)]
    zero = [torch.zeros(3, 4)]
    minus = [torch.full((3, 4), -2.0)]
    assert discriminator_hinge_loss(two, minus).item() == 0.0
    assert discriminator_hinge_loss(zero, zero).item() == 2.0
    assert (
        discriminator_hinge_loss([torch.tensor([0.5])], [torch.tensor([0.5])]).item()
        == 2.0
    )
    assert generator_hinge_loss(zero).item() == 1.0
    assert generator_hinge_loss(two).item() == 0.0
    # Averaged over sub-discriminators.
    assert generator_hinge_loss(zero + two).item() == 0.5


def test_feature_matching_trains_only_the_generator_side():
    real = [[torch.ones(2, 3, requires_grad=True), torch.ones(1, requires_grad=True)]]
    fake = [
        [
            torch.zeros(2, 3, requires_grad=True),
            torch.full((1,), 3.0, requires_grad=True),
        ]
    ]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx((1.0 + 2.0) / 2)
    loss.backward()
    assert real[0][0].grad is None
    assert fake[0][0].grad is not None
    assert feature_matching_loss(real, real).item() == 0.0


@pytest.mark.parametrize("length", [4800, 4801, 4799])
def test_discriminator_outputs(length):
    disc = Discriminators(
        periods=[2, 3],
        period_channels=[4, 8],
        resolutions=[[256, 64, 256]],
        resolution_channels=4,
    )
    sig = torch.randn(3, length, requires_grad=True)
    logits, acts = disc(sig)
    assert len(logits) == len(acts) == 3
    for out, hidden in zip(logits, acts):
        assert out.shape[0] == 3 and out.dim() == 2
        assert len(hidden) >= 3
        assert torch.equal(hidden[-1].flatten(1), out)
    sum(o.sum() for o in logits).backward()
    assert sig.grad is not None and torch.isfinite(sig.grad).all()


def test_period_discriminator_sees_whole_periods():
    disc = PeriodDiscriminator(5, channels=[4])
    _, hidden = disc(torch.randn(2, 103))
    # 103 samples are padded to 105 = 21 rows of 5; the first conv strides rows by 3.
    assert hidden[0].shape[-1] == 5 and hidden[0].shape[-2] == 7
    res = ResolutionDiscriminator(256, 64, 256, channels=4)
    _, hidden = res(torch.randn(2, 1024))
    assert hidden[0].shape[-2] == 1024 // 64 + 1  # STFT frames
    assert hidden[0].shape[-1] == 129  # bins, before the frequency strides


def test_batch_items_are_independent():
    disc = Discriminators(
        periods=[3],
        period_channels=[4],
        resolutions=[[256, 64, 256]],
        resolution_channels=4,
    )
    sig = torch.randn(2, 2400)
    together, _ = disc(sig)
    alone, _ = disc(sig[1:])
    for a, b in zip(together, alone):
        assert torch.allclose(a[1:], b, atol=1e-5)
