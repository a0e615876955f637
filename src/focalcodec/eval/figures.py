"""PNG figures: original-versus-output spectrograms and the code-usage distribution.

matplotlib is optional (extra ``eval``); :func:`figures_available` tells the runner
whether figures can be drawn. The non-interactive Agg backend is used so that figures
render on servers without a display.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..files.atomic import atomic_write
from ..modules.spectral import magnitude
from .base import EVAL_RATE

__all__ = ["code_usage_figure", "figures_available", "spectrogram_figure"]


def figures_available() -> str | None:
    """Return ``None`` if matplotlib imports, else the reason it does not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError as exc:
        return f"needs matplotlib ({exc}): pip install 'focalcodec[eval]'"
    return None


def _log_power(sig: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Log power spectrogram in dB, shape (n_fft // 2 + 1, frames)."""
    mag = magnitude(torch.from_numpy(np.asarray(sig, dtype=np.float32)), n_fft, hop)
    return (10.0 * torch.log10(mag.square() + 1e-10)).numpy()


def _save(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_write(path, force=True) as fileobj:
        fileobj.write(buf.getvalue())


def spectrogram_figure(
    path: Path, ref: np.ndarray, est: np.ndarray, title: str, est_label: str = "output"
) -> None:
    """Draw the spectrograms of ``ref`` and ``est`` one above the other.

    Parameters
    ----------
    path
        PNG file to write.
    ref, est
        Waveforms at :data:`EVAL_RATE`, shape (N,) and (N',).
    title
        Figure title (file key and model).
    est_label
        Label of the lower panel ("reconstruction", "converted").
    """
    import matplotlib.pyplot as plt

    specs = [_log_power(ref), _log_power(est)]
    # A common colour scale: the output is judged against the original's range.
    top = float(specs[0].max())
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, spec, label in zip(axes, specs, ("original", est_label), strict=True):
        frames = spec.shape[1]
        ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            vmin=top - 80.0,
            vmax=top,
            extent=(0.0, frames * 128 / EVAL_RATE, 0.0, EVAL_RATE / 2000),
            cmap="magma",
        )
        ax.set_ylabel(f"{label}\nkHz")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def code_usage_figure(path: Path, counts: Mapping[str, np.ndarray]) -> None:
    """Rank-frequency plot of the codes of each model (one line per model).

    The x axis is the code rank divided by the codebook size, so codecs with different
    codebooks share one plot; a flat line is a uniformly used codebook, a line that
    drops early means codes that are never emitted.

    Parameters
    ----------
    path
        PNG file to write.
    counts
        Model label to histogram over its codebook, shape (K,).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, hist in counts.items():
        hist = np.sort(np.asarray(hist, dtype=np.float64))[::-1]
        if hist.sum() == 0:
            continue
        rank = (np.arange(hist.size) + 0.5) / hist.size
        ax.plot(rank, hist / hist.sum() * hist.size, label=f"{label} (K={hist.size})")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="uniform")
    # symlog keeps unused codes (frequency 0) on the plot, unlike a log axis.
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("code rank / codebook size")
    ax.set_ylabel("frequency × codebook size")
    ax.set_title("Code usage distribution")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
