"""Figures written during and after training (needs matplotlib, from the train extra).

Every function returns False instead of failing when matplotlib is missing, so training
never stops for a plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..files.atomic import atomic_write
from ..modules.spectral import magnitude

__all__ = ["have_matplotlib", "plot_curves", "plot_spectrograms"]


def have_matplotlib() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(rows: int, cols: int = 1, size: tuple[float, float] = (8.0, 2.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        rows, cols, figsize=(size[0], size[1] * rows), squeeze=False
    )
    return plt, fig, axes


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_write(path, force=True) as fileobj:
        fig.savefig(fileobj, format="png", dpi=72)
    plt.close(fig)


def log_spectrogram(sig: torch.Tensor, n_fft: int = 512) -> torch.Tensor:
    """(freq, time) log-magnitude in dB of a (N,) waveform, for display."""
    spec = magnitude(sig.detach().float().cpu(), n_fft, n_fft // 4)
    return 20.0 * spec.clamp(min=1e-5).log10()


def plot_spectrograms(
    panels: Sequence[tuple[str, torch.Tensor, int]], path: str | Path
) -> bool:
    """Stack log spectrograms of waveforms in one PNG.

    Parameters
    ----------
    panels
        ``(title, waveform (N,), sample_rate)`` per row.
    path
        Output PNG (replaced if it exists: it is a training output).

    Returns
    -------
        False when matplotlib is not installed (nothing written).
    """
    if not have_matplotlib() or not panels:
        return False
    plt, fig, axes = _figure(len(panels))
    for ax, (title, sig, rate) in zip(axes[:, 0], panels, strict=True):
        spec = log_spectrogram(sig).numpy()
        extent = (0.0, sig.numel() / rate, 0.0, rate / 2000.0)
        ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    _save(plt, fig, Path(path))
    return True


def plot_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    log_y: bool = False,
) -> bool:
    """One panel per curve name, each a list of ``(step, value)`` points.

    Returns
    -------
        False when matplotlib is not installed (nothing written).
    """
    if not have_matplotlib() or not curves:
        return False
    plt, fig, axes = _figure(len(curves), size=(7.0, 2.2))
    for ax, (name, points) in zip(axes[:, 0], curves.items(), strict=True):
        if points:
            xs, ys = zip(*points, strict=True)
            # Markers keep sparse curves (validation, short runs) visible.
            ax.plot(xs, ys, linewidth=1.0, marker="." if len(xs) < 50 else None)
        ax.set_ylabel(name, fontsize=8)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title, fontsize=10)
    axes[-1, 0].set_xlabel("step")
    _save(plt, fig, Path(path))
    return True
