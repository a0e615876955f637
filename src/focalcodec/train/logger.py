"""Metric logging to a CSV file and, optionally, TensorBoard.

The CSV is in long format (``step,epoch,split,name,value,time``), so stages can log
different metrics at different times without a fixed header. ``read_metrics`` gives it
back for plots.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..files.atomic import atomic_write

__all__ = ["MetricLogger", "read_metrics"]

_HEADER = ["step", "epoch", "split", "name", "value", "time"]


class MetricLogger:
    """Append metrics of the main process to ``<run_dir>/metrics.csv``.

    Parameters
    ----------
    run_dir
        Run folder.
    tensorboard
        Also write TensorBoard events to ``<run_dir>/tensorboard`` (needs the
        ``tensorboard`` package, from the ``train`` extra).
    resume_step
        When resuming, rows logged after this step (by the interrupted run, past its
        last checkpoint) are dropped so the curves continue without duplicates.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = False,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        elif self.path.exists():
            os.unlink(self.path)
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(_HEADER)
            self._file.flush()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(
                    "log.tensorboard needs the tensorboard package: "
                    "pip install 'focalcodec[train]'"
                ) from exc
            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self._start = time.time()

    def _truncate(self, step: int) -> None:
        rows = [r for r in read_metrics(self.path) if int(r["step"]) <= step]
        with atomic_write(self.path, force=True) as fileobj:
            text = [",".join(_HEADER)]
            text += [",".join(str(r[k]) for k in _HEADER) for r in rows]
            fileobj.write(("\n".join(text) + "\n").encode())

    def log(
        self, step: int, epoch: int, split: str, metrics: Mapping[str, float]
    ) -> None:
        """Record scalar metrics of one step."""
        now = round(time.time() - self._start, 3)
        for name, value in metrics.items():
            self._csv.writerow([step, epoch, split, name, f"{float(value):.6g}", now])
            if self._writer is not None:
                self._writer.add_scalar(f"{split}/{name}", float(value), step)
        self._file.flush()

    def close(self) -> None:
        """Flush and close the files."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics CSV as dicts (values are strings)."""
    with open(path, newline="", encoding="utf-8") as fileobj:
        return list(csv.DictReader(fileobj))
