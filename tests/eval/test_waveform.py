"""Intrusive signal metrics: perfect on identity, worse on degraded copies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalcodec.eval import waveform as wf

RATE = 16000


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Harmonic tones with a syllable-rate envelope: enough structure for STOI/PESQ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    sig = voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


def add_noise(sig: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(sig.size)
    noise *= np.sqrt((sig**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    return (sig + noise).astype(np.float32)


def low_pass(sig: np.ndarray, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(sig)
    spec[np.fft.rfftfreq(sig.size, 1 / RATE) > cutoff_hz] = 0
    return np.fft.irfft(spec, sig.size).astype(np.float32)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return speech_like()


def test_si_sdr_equals_energy_ratio_for_orthogonal_noise(clean):
    # With noise orthogonal to the (zero-mean) reference, the optimal gain is 1 and
    # SI-SDR reduces to 10 log10(|ref|^2 / |noise|^2) by definition (Le Roux et al.).
    ref = clean - clean.mean()
    noise = np.random.default_rng(3).standard_normal(ref.size)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref
    noise *= np.sqrt((ref @ ref) / (noise @ noise) / 10.0)  # 10 dB
    assert wf.si_sdr(ref, ref + noise) == pytest.approx(10.0, abs=1e-4)


def test_si_sdr_ignores_gain_and_is_huge_on_identity(clean):
    noisy = add_noise(clean, 5)
    assert wf.si_sdr(clean, 0.25 * noisy) == pytest.approx(wf.si_sdr(clean, noisy))
    assert wf.si_sdr(clean, clean) > 90
    assert wf.si_sdr(clean, add_noise(clean, 20)) > wf.si_sdr(
        clean, add_noise(clean, 0)
    )


def test_si_sdr_of_silent_reference_is_nan():
    assert math.isnan(wf.si_sdr(np.zeros(100), np.ones(100)))


def test_length_mismatch_is_an_error(clean):
    with pytest.raises(ValueError):
        wf.si_sdr(clean, clean[:-1])


@pytest.mark.parametrize("fn", [wf.mel_distance, wf.multi_resolution_stft_distance])
def test_spectral_distances_zero_on_identity_and_grow_with_damage(fn, clean):
    assert fn(clean, clean) == pytest.approx(0.0, abs=1e-6)
    mild, strong = fn(clean, add_noise(clean, 30)), fn(clean, add_noise(clean, 0))
    assert 0 < mild < strong
    assert fn(clean, low_pass(clean, 1000)) > fn(clean, low_pass(clean, 6000)) > 0


def test_stoi_perfect_on_identity_and_lower_when_degraded(clean):
    pytest.importorskip("pystoi")
    assert wf.stoi(clean, clean) == pytest.approx(1.0, abs=1e-6)
    assert (
        wf.stoi(clean, add_noise(clean, -5)) < wf.stoi(clean, add_noise(clean, 10)) < 1
    )


def test_pesq_maximal_on_identity_and_lower_when_degraded(clean):
    pytest.importorskip("pesq")
    # 4.644 is the top of the P.862.2 wideband MOS-LQO mapping.
    assert wf.pesq_wb(clean, clean) == pytest.approx(4.644, abs=2e-3)
    assert wf.pesq_wb(clean, add_noise(clean, 0)) < wf.pesq_wb(
        clean, add_noise(clean, 20)
    )
    assert wf.pesq_wb(clean, low_pass(clean, 1000)) < 4.0


def test_pesq_without_speech_is_nan():
    pytest.importorskip("pesq")
    silent = np.zeros(RATE, dtype=np.float32)
    assert math.isnan(wf.pesq_wb(silent, silent))


def test_metric_objects_score_batches(clean):
    from focalcodec.eval.base import EvalItem

    items = [EvalItem("a", clean, clean), EvalItem("b", clean, add_noise(clean, 0))]
    rows = wf.MelDistance().score(items)
    assert rows[0]["mel_dist"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["mel_dist"] > 0.1
    assert wf.SISDR().summarize(rows=[{"sisdr": 1.0}, {"sisdr": 3.0}]) == {"sisdr": 2.0}
