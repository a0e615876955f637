"""List figures in README.md and docs/*.md whose section names no measurement.

A figure is a number with a unit of measurement (ms, s, MB, GB, dB, %, bytes, x, kbps,
...). A section (the text under one heading) is sourced when it names a JSON file of
``benchmarks/results/`` (or the command that writes one). The list is a reading aid for
reviewers: a figure in an unsourced section is either a fact of the format or the
architecture, or a claim to measure with a committed script or to remove.

Usage::

    python benchmarks/claims.py            # prints file:line  figure  text
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNIT = r"(?:ms|s|min|minutes|h|hours|MB|GB|KB|kB|dB|%|bytes|B|x|bps|kbps|Hz|kHz)"
FIGURE = re.compile(rf"(?<![\w.])\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?\s?{UNIT}(?![\w])")
SOURCE = re.compile(r"benchmarks/results/[\w.-]+\.json|--json\s+\S+\.json")


def sections(path: Path):
    """(first line number, lines) of each heading's section; code blocks included."""
    start, lines = 1, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("#") and lines:
            yield start, lines
            start, lines = number, []
        lines.append(line)
    if lines:
        yield start, lines


def unsourced(path: Path):
    for start, lines in sections(path):
        if SOURCE.search("\n".join(lines)):
            continue
        for offset, line in enumerate(lines):
            for match in FIGURE.finditer(line):
                yield start + offset, match.group(0), line.strip()


def main() -> int:
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    count = 0
    for path in paths:
        for number, figure, text in unsourced(path):
            print(f"{path.relative_to(REPO)}:{number}  {figure:>10}  {text[:100]}")
            count += 1
    print(f"{count} figures in sections that name no benchmarks/results JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main())
