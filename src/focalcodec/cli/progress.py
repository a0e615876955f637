"""Progress bars and the one-line summary of the file verbs.

Bars go to stderr, only when it is a terminal and ``-q`` was not given: one bar over the
files of a batch, and one per long file (in seconds of audio), so a single hour-long file
shows its progress too. Pipes, logs and ``-q`` get no bars. A run that succeeds ends with
one summary line (unless ``-q``), for example
``encoded 3 files, 12.4 s of audio -> 9.9 kB``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Tally", "bars_wanted", "file_bar", "human_size"]

# Files whose audio lasts less than this get no bar of their own: they finish quickly.
FILE_BAR_SECONDS = 30.0


def bars_wanted(quiet: bool) -> bool:
    """Whether to draw progress bars: stderr is a terminal and not ``-q``."""
    isatty = getattr(sys.stderr, "isatty", None)
    return not quiet and bool(isatty and isatty())


@contextmanager
def file_bar(
    enabled: bool, name: str, seconds: float
) -> Iterator[Callable[[float], None]]:
    """A bar over one file's audio; yields ``update(fraction_done)``.

    Drawn only when ``enabled`` and the file lasts at least
    :data:`FILE_BAR_SECONDS`; otherwise ``update`` does nothing.
    """
    if not enabled or seconds < FILE_BAR_SECONDS:
        yield lambda fraction: None
        return
    from tqdm import tqdm

    total = round(seconds, 1)
    label = name if len(name) <= 30 else "..." + name[-27:]
    with tqdm(total=total, unit="s", desc=label, leave=False, file=sys.stderr) as bar:

        def update(fraction: float) -> None:
            bar.n = round(min(max(fraction, 0.0), 1.0) * total, 1)
            bar.refresh()

        yield update


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
