"""One-line messages on stderr, kept intact below an active progress bar.

Every line is escaped (:func:`printable`): a file name may hold a newline, a carriage
return or a terminal escape sequence, and printed as it is, it could forge report lines
or control the terminal. Such characters are shown as Python escapes (``\\n``,
``\\x1b``), so one message is always one line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import FocalCodecError

__all__ = [
    "error",
    "message",
    "print_json",
    "printable",
    "show_warning",
    "write_line",
]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control characters,
    newlines, escapes, format marks such as bidirectional overrides, undecodable
    bytes of a file name) written as a Python escape."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def write_line(text: str) -> None:
    """Print ``text`` on stderr, escaped to one line (:func:`printable`), without
    breaking a tqdm progress bar."""
    from tqdm import tqdm

    tqdm.write(printable(text), file=sys.stderr)


def error(text: str) -> None:
    write_line(f"focalcodec: error: {text}")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: one line, no source location."""
    write_line(f"focalcodec: warning: {message}")


def message(exc: BaseException, name: str | None = None) -> str:
    """The first line of an exception's text; ``file: reason`` for OS errors.

    ``name`` (a file name the text may contain) is escaped first, so that a newline in
    it does not cut the message short.
    """
    if isinstance(exc, OSError) and not isinstance(exc, FocalCodecError):
        if exc.filename is not None and exc.strerror:
            return f"{printable(str(exc.filename))}: {exc.strerror}"
    text = str(exc).strip()
    if name:
        text = text.replace(name, printable(name))
    lines = text.splitlines()
    return lines[0] if lines else type(exc).__name__


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))
