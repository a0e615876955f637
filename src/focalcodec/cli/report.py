"""One-line messages on stderr, kept intact below an active progress bar."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import FocalCodecError

__all__ = ["error", "message", "print_json", "show_warning", "write_line"]


def write_line(text: str) -> None:
    """Print ``text`` on stderr without breaking a tqdm progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def error(text: str) -> None:
    write_line(f"focalcodec: error: {text}")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: one line, no source location."""
    write_line(f"focalcodec: warning: {message}")


def message(exc: BaseException) -> str:
    """The first line of an exception's text; ``file: reason`` for OS errors."""
    if isinstance(exc, OSError) and not isinstance(exc, FocalCodecError):
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))
