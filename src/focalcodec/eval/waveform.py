"""Intrusive signal metrics: the reconstruction compared sample by sample with the original.

* SI-SDR (scale-invariant signal-to-distortion ratio, Le Roux et al., 2019), in dB.
* STOI (short-time objective intelligibility, Taal et al., 2011) through ``pystoi``.
* PESQ wideband (ITU-T P.862.2) through ``pesq``; MOS-LQO from about 1.0 to 4.64.
* Mel distance: mean absolute difference of log mel spectrograms.
* Multi-resolution STFT distance: spectral convergence plus log-magnitude L1, averaged
  over three STFT sizes, as used to train GAN vocoders.

The spectra are those of :mod:`focalcodec.modules.spectral`, as in the training losses.

All functions take two mono waveforms of equal length at :data:`EVAL_RATE`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from ..modules.spectral import MelSpectrogram, magnitude
from .base import EVAL_RATE, EvalItem, Metric, MetricModels, MetricUnavailable, Row
from .base import register_metric as _register

__all__ = [
    "MelDistance",
    "MultiResolutionSTFTDistance",
    "PESQ",
    "SISDR",
    "STOI",
    "mel_distance",
    "multi_resolution_stft_distance",
    "si_sdr",
]

_EPS = 1e-8
# (n_fft, hop) pairs; window = n_fft. Spans 32 ms to 128 ms windows at 16 kHz.
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def _check_pair(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    est = np.asarray(est, dtype=np.float64).reshape(-1)
    if ref.shape != est.shape:
        raise ValueError(f"ref and est differ in length: {ref.size} vs {est.size}")
    return ref, est


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB.

    The reference is scaled by the least-squares gain ``<est, ref> / <ref, ref>``; the
    ratio of its energy to that of the residual is the score. Means are removed first.

    Parameters
    ----------
    ref, est
        Waveforms, shape (N,).

    Returns
    -------
        SI-SDR in dB; NaN if ``ref`` is silent. Identical inputs give a large finite
        value (over 90 dB at speech levels), set by the 1e-8 guard against log(0).
    """
    ref, est = _check_pair(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = float(ref @ ref)
    if ref_energy <= _EPS:
        return math.nan
    target = (float(est @ ref) / ref_energy) * ref
    noise = est - target
    return 10.0 * math.log10(
        (float(target @ target) + _EPS) / (float(noise @ noise) + _EPS)
    )


@lru_cache(maxsize=8)
def _melspec(sample_rate: int, n_fft: int, hop: int, n_mels: int) -> MelSpectrogram:
    return MelSpectrogram(sample_rate, n_fft, hop, n_mels)


def mel_distance(
    ref: np.ndarray,
    est: np.ndarray,
    sample_rate: int = EVAL_RATE,
    n_fft: int = 1024,
    hop: int = 256,
    n_mels: int = 80,
) -> float:
    """Mean absolute difference of natural-log mel spectrograms (0 for identical inputs).

    Parameters
    ----------
    ref, est
        Waveforms, shape (N,).
    sample_rate
        Sample rate in Hz.
    n_fft, hop, n_mels
        Analysis parameters (Hann window of ``n_fft`` samples).

    Returns
    -------
        Distance in nepers, >= 0.
    """
    ref, est = _check_pair(ref, est)
    sig = torch.from_numpy(np.stack([ref, est]).astype(np.float32))
    # Magnitudes are floored at 1e-5 so silent frames do not dominate through log(0).
    mels = _melspec(sample_rate, n_fft, hop, n_mels)(sig)
    return float((mels[0] - mels[1]).abs().mean())


def multi_resolution_stft_distance(
    ref: np.ndarray,
    est: np.ndarray,
    resolutions: Sequence[tuple[int, int]] = STFT_RESOLUTIONS,
) -> float:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions.

    Parameters
    ----------
    ref, est
        Waveforms, shape (N,).
    resolutions
        (n_fft, hop) pairs; the window length equals ``n_fft``.

    Returns
    -------
        Distance >= 0 (0 for identical inputs).
    """
    ref, est = _check_pair(ref, est)
    sig = torch.from_numpy(np.stack([ref, est]).astype(np.float32))
    total = 0.0
    for n_fft, hop in resolutions:
        mag = torch.clamp(magnitude(sig, n_fft, hop), min=1e-7)
        convergence = torch.linalg.norm(mag[0] - mag[1]) / torch.linalg.norm(mag[0])
        log_l1 = (mag[0].log() - mag[1].log()).abs().mean()
        total += float(convergence) + float(log_l1)
    return total / len(resolutions)


def stoi(ref: np.ndarray, est: np.ndarray, extended: bool = False) -> float:
    """STOI (or extended STOI) in [0, 1] via ``pystoi`` (1 for identical inputs)."""
    from pystoi import stoi as _stoi

    ref, est = _check_pair(ref, est)
    return float(_stoi(ref, est, EVAL_RATE, extended=extended))


def pesq_wb(ref: np.ndarray, est: np.ndarray) -> float:
    """Wideband PESQ MOS-LQO via ``pesq``; NaN when PESQ finds no speech."""
    from pesq import PesqError, pesq

    ref, est = _check_pair(ref, est)
    if not np.any(ref) or not np.any(est):
        return math.nan  # pesq would divide by a zero peak
    try:
        return float(pesq(EVAL_RATE, ref, est, "wb"))
    except PesqError:
        return math.nan


def _require(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise MetricUnavailable(
            f"needs the '{module}' package: pip install 'focalcodec[{extra}]'"
        ) from exc


class _PairMetric(Metric):
    """A metric computed by one function of (ref, est) per item."""

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        raise NotImplementedError

    def score(self, items: Sequence[EvalItem]) -> list[Row]:
        return [{self.columns[0]: self._value(it.ref, it.est)} for it in items]


@_register("sisdr")
class SISDR(_PairMetric):
    """SI-SDR in dB."""

    name = "sisdr"
    columns = ("sisdr",)
    higher_is_better = {"sisdr": True}

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        return si_sdr(ref, est)


@_register("stoi")
class STOI(_PairMetric):
    """STOI via pystoi (extra ``eval``)."""

    name = "stoi"
    columns = ("stoi",)
    higher_is_better = {"stoi": True}

    def setup(self, cache: MetricModels) -> None:
        _require("pystoi", "eval")

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        return stoi(ref, est)


@_register("pesq")
class PESQ(_PairMetric):
    """Wideband PESQ via pesq (extra ``eval``)."""

    name = "pesq"
    columns = ("pesq",)
    higher_is_better = {"pesq": True}

    def setup(self, cache: MetricModels) -> None:
        _require("pesq", "eval")

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        return pesq_wb(ref, est)


@_register("mel")
class MelDistance(_PairMetric):
    """Log-mel L1 distance."""

    name = "mel"
    columns = ("mel_dist",)
    higher_is_better = {"mel_dist": False}

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        return mel_distance(ref, est)


@_register("mrstft")
class MultiResolutionSTFTDistance(_PairMetric):
    """Multi-resolution STFT distance."""

    name = "mrstft"
    columns = ("mrstft_dist",)
    higher_is_better = {"mrstft_dist": False}

    def _value(self, ref: np.ndarray, est: np.ndarray) -> float:
        return multi_resolution_stft_distance(ref, est)
