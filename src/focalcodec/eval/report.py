"""Writing results: JSON with everything, CSV tables, and a Markdown comparison table.

Every file is written atomically (temporary file in the same folder, then renamed), so an
interrupted run never leaves a half-written report behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files.atomic import atomic_write

__all__ = ["markdown_table", "write_csv", "write_json", "write_text"]

# Columns the summary table shows first, in this order, with their direction.
CODEC_COLUMNS: dict[str, bool | None] = {
    "files": None,
    "minutes": None,
    "bitrate_bps": None,
    "nominal_bps": None,
    "entropy_bps": None,
    "code_usage": True,
    "norm_entropy": True,
    "enc_rtf": False,
    "dec_rtf": False,
}
_NO_DECIMALS = {"files", "bitrate_bps", "nominal_bps", "entropy_bps"}


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically, replacing an older file."""
    with atomic_write(path, force=True) as fileobj:
        fileobj.write(text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON; NaN and infinities become ``null``."""
    write_text(path, json.dumps(_json_safe(obj), indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows as CSV with the union of their keys as header (first-seen order)."""
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def markdown_table(
    rows: Sequence[Mapping[str, Any]], directions: Mapping[str, bool | None]
) -> str:
    """Render summary rows as a GitHub Markdown table.

    Parameters
    ----------
    rows
        One dict per model (and task), with ``model`` and numeric columns.
    directions
        Column name to True (higher is better, shown with an up arrow), False (down
        arrow) or None; columns in this order are shown, if any row has a value.

    Returns
    -------
        The table, ending with a newline.
    """
    cols = [c for c in directions if any(_is_number(r.get(c)) for r in rows)]
    arrows = {True: " ↑", False: " ↓", None: ""}
    head = ["model"] + [c + arrows[directions[c]] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row.get("model", ""))] + [_fmt(c, row.get(c)) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(col: str, value: Any) -> str:
    if not _is_number(value):
        return "–"
    if col in _NO_DECIMALS:
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):  # numpy / torch scalars
        return _json_safe(obj.item())
    return obj
