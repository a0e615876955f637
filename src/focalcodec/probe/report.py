"""What a probe run leaves behind: results.json, a Markdown table and figures.

Every file is written atomically (:mod:`focalcodec.files.atomic`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files.atomic import atomic_write

__all__ = [
    "markdown_table",
    "write_bytes",
    "plot_confusion",
    "plot_learning_curves",
    "write_json",
]

_HEADERS = {
    "classify": ("test accuracy", "test error rate", "chance", "bag of tokens"),
    "asr": ("test CER", "test WER"),
}


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``."""
    with atomic_write(path, force=True) as fileobj:
        fileobj.write(data)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, replacing ``path`` atomically."""
    write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f} %"


def markdown_table(task: str, results: Sequence[dict[str, Any]]) -> str:
    """One row per model: test scores (for a classifier also the test accuracy of the
    bag-of-tokens baseline, :mod:`focalcodec.probe.baseline`), best validation loss,
    epochs, probe size."""
    # Every model of a run picks its best epoch by the same validation metric.
    best = f"best valid {results[0]['best_metric']}" if results else "best"
    cols = ["model", "input", *_HEADERS[task], best, "epochs (best)", "probe params"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        if task == "classify":
            base = r.get("baseline")
            scores = [
                _pct(r["test_accuracy"]),
                _pct(r["test_error_rate"]),
                _pct(r["chance_accuracy"]),
                _pct(base["test_accuracy"]) if base else "-",
            ]
        else:
            scores = [_pct(r["test_cer"]), _pct(r["test_wer"])]
        row = [
            f"`{r['model']}`",
            r["input"],
            *scores,
            "-" if r["best_value"] is None else f"{r['best_value']:.3f}",
            f"{r['epochs']} ({r['best_epoch']})",
            f"{r['num_params'] / 1e6:.2f} M",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def plot_learning_curves(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Training and validation loss, and the validation error rate, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        epochs = [c["epoch"] for c in r["curves"]]
        line = axes[0].plot(
            epochs, [c["valid_loss"] for c in r["curves"]], label=f"{r['model']} valid"
        )[0]
        axes[0].plot(
            epochs,
            [c.get("train_loss", float("nan")) for c in r["curves"]],
            "--",
            color=line.get_color(),
            label=f"{r['model']} train",
        )
        axes[1].plot(
            epochs, [c["valid_error_rate"] for c in r["curves"]], label=r["model"]
        )
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel="error rate", title="validation error rate")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path
) -> None:
    """Confusion matrix of the test set (rows: truth, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.35 * len(classes) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(confusion, cmap="Blues")
    ticks = range(len(classes))
    fontsize = 8 if len(classes) <= 20 else 5
    ax.set_xticks(ticks, classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, classes, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(classes) <= 20:
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    _save_figure(fig, path)
