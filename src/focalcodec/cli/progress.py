"""Progress bars and the one-line summary of the file verbs.

Bars go to stderr, only when it is a terminal and ``-q`` was not given: one bar over the
files of a batch, and one per long file (in percent of its audio), so a single hour-long
file shows its progress too. Pipes, logs and ``-q`` get no bars. A run that succeeds ends with
one summary line (unless ``-q``), for example
``encoded 3 files, 12.4 s of audio -> 9.9 kB``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .report import printable

__all__ = ["FileBar", "Tally", "bars_wanted", "human_size"]


def bars_wanted(quiet: bool) -> bool:
    """Whether to draw progress bars: stderr is a terminal and not ``-q``."""
    isatty = getattr(sys.stderr, "isatty", None)
    return not quiet and bool(isatty and isatty())


class FileBar:
    """A bar over one file, for the pipelines' ``progress(fraction)`` callback.

    Drawn only when ``enabled`` and once the file shows itself long: a file that is
    done at its first report (one model call) never gets a bar. :meth:`close` removes
    it.
    """

    def __init__(self, enabled: bool, name: str) -> None:
        self.enabled = enabled
        name = printable(name)  # a file name cannot draw on the terminal
        self.label = name if len(name) <= 30 else "..." + name[-27:]
        self._bar = None

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if fraction >= 1.0:
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=100.0, unit="%", desc=self.label, leave=False, file=sys.stderr
            )
        self._bar.n = round(min(max(fraction, 0.0), 1.0) * 100.0, 1)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def human_size(size: int) -> str:
    """``9.9 kB``, ``1.2 MB``: decimal units, as file managers show them."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@dataclass
class Tally:
    """What a batch did, for its summary line."""

    files: int = 0
    seconds: float = 0.0
    size: int = 0
    skipped: int = 0

    def add(self, seconds: float, size: int) -> None:
        self.files += 1
        self.seconds += seconds
        self.size += size

    def line(self, verb: str) -> str:
        """``encoded 3 files, 12.4 s of audio -> 9.9 kB`` (plus skipped files)."""
        text = (
            f"{verb} {self.files} file{'s' * (self.files != 1)}, "
            f"{self.seconds:.1f} s of audio -> {human_size(self.size)}"
        )
        if self.skipped:
            text += f"; {self.skipped} skipped (output already there)"
        return text
