"""The columns of a Parquet token file: which item fields get a typed column.

Every Parquet data file of a token folder has, in this order::

    id, path, tokens, num_tokens, duration    the token folder's own columns
    <the column plan>                         one typed column per planned field
    extra                                     every other field, as one JSON object

A column plan maps a field name to a kind: ``string``, ``bool``, ``int8`` ...
``int64``, ``uint8`` ... ``uint64``, ``float32``, ``float64`` (the Arrow type of the
same name), or ``text``: a string column that takes any value as its ``str()`` (the
manifest fields ``speaker``, ``language``, ``text`` and ``split`` of a folder of files,
:data:`FILE_COLUMNS`). One plan holds for every file of a folder, whatever the rank
and however many runs wrote it (:func:`folder_columns`), so the files read as one
table.

A value that does not fit its column (a string in an ``int64`` column, an integer
beyond the column's range, a float in an integer column, a list) is written as null
in the column and kept, unchanged, under its name in ``extra``: a file is never
refused or cut short for it, and nothing is lost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "FILE_COLUMNS",
    "KINDS",
    "OWN_COLUMNS",
    "arrow_kind",
    "check_plan",
    "folder_columns",
    "infer_columns",
    "metadata_arrays",
    "resumed_plan",
    "schema_columns",
    "value_kind",
]

# The columns every Parquet data file has, besides the plan's and ``extra``.
OWN_COLUMNS = ("id", "path", "tokens", "num_tokens", "duration")
FILE_COLUMNS = {"speaker": "text", "language": "text", "text": "text", "split": "text"}
_INTS = {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}
KINDS = frozenset({"string", "text", "bool", "float32", "float64"} | _INTS)
_FLOAT32_MAX = 3.4028234663852886e38


def check_plan(plan: dict[str, str]) -> dict[str, str]:
    """``plan``, checked: known kinds, and no name of the folder's own columns."""
    for name, kind in plan.items():
        if name in OWN_COLUMNS or name == "extra":
            raise InputError(
                f"column {name!r}: a column of the token folder itself; store the "
                f"field under another name (the sources use source_{name})"
            )
        if kind not in KINDS:
            raise InputError(
                f"column {name!r}: unknown kind {kind!r} (one of "
                f"{', '.join(sorted(KINDS))})"
            )
    return dict(plan)


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind in ("string", "text"):
        return pa.string()
    if kind == "bool":
        return pa.bool_()
    return pa.type_for_alias(kind)


def arrow_kind(kind: Any) -> str | None:
    """The plan kind of an Arrow type, None for one that is no scalar (a list, a
    struct, bytes, a timestamp, null). Narrow floats widen to ``float32``."""
    import pyarrow as pa

    types = pa.types
    if types.is_string(kind) or types.is_large_string(kind):
        return "string"
    if types.is_boolean(kind):
        return "bool"
    if types.is_integer(kind):
        return str(kind)
    if types.is_floating(kind):
        return "float64" if kind.bit_width == 64 else "float32"
    return None


def value_kind(value: Any) -> str | None:
    """The kind a Python value asks for (int64, float64, string, bool), or None."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return None


def infer_columns(
    records: Iterable[dict[str, Any]], skip: Iterable[str] = ()
) -> dict[str, str]:
    """A plan from sample records: a field whose values (None aside) are all of one
    kind gets that column, integers and floats together ``float64``; a field with
    mixed or non-scalar values, or only None, gets none (it goes to ``extra``).
    Fields keep the order in which they first appear."""
    leave = set(skip) | set(OWN_COLUMNS) | {"extra"}
    seen: dict[str, set[str | None]] = {}
    for record in records:
        for key, value in record.items():
            if key not in leave and value is not None:
                seen.setdefault(key, set()).add(value_kind(value))
    plan = {}
    for key, kinds in seen.items():
        if kinds == {"int64", "float64"}:
            plan[key] = "float64"
        elif len(kinds) == 1 and None not in kinds:
            plan[key] = next(iter(kinds))
    return plan


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")  # lone surrogates (from JSON escapes) are not
    except UnicodeEncodeError:
        return False
    return True


def _fit(value: Any, kind: str) -> tuple[bool, Any]:
    """(fits, the value to write) for a non-None value in a column of ``kind``."""
    if kind == "text":
        text = str(value)
        return _encodable(text), text
    if kind == "string":
        return isinstance(value, str) and _encodable(value), value
    if kind == "bool":
        return isinstance(value, bool), value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind.startswith(("int", "uint")):
        bits = int(kind.rsplit("int", 1)[1])
        lo = 0 if kind[0] == "u" else -(2 ** (bits - 1))
        return is_int and lo <= value < lo + 2**bits, value
    if not (is_int or isinstance(value, float)):
        return False, value
    as_float = float(value) if is_int and abs(value) <= 2**53 else value
    if not isinstance(as_float, float):
        return False, value  # an integer a float would round
    if kind == "float32" and math.isfinite(as_float) and abs(as_float) > _FLOAT32_MAX:
        return False, value  # would become inf
    return True, as_float


def metadata_arrays(
    records: list[dict[str, Any]], plan: dict[str, str]
) -> tuple[dict[str, Any], Any]:
    """The plan's columns and ``extra`` for ``records``, as pyarrow arrays.

    Returns
    -------
        (column name -> array, the ``extra`` array), one row per record.
    """
    import pyarrow as pa

    own = set(OWN_COLUMNS)
    extras = [
        {k: v for k, v in r.items() if k not in own and k not in plan} for r in records
    ]
    columns = {}
    for name, kind in plan.items():
        values = []
        for record, extra in zip(records, extras, strict=True):
            value = record.get(name)
            fits, written = (True, None) if value is None else _fit(value, kind)
            values.append(written if fits else None)
            if not fits:
                extra[name] = value
        columns[name] = pa.array(values, _arrow_type(kind))
    text = [json.dumps(e, sort_keys=True) for e in extras]
    return columns, pa.array(text, pa.string())


def schema_columns(schema: Any) -> dict[str, str]:
    """The plan an existing data file was written with (from its Arrow schema)."""
    return {
        field.name: kind
        for field in schema
        if field.name not in OWN_COLUMNS
        and field.name != "extra"
        and (kind := arrow_kind(field.type)) is not None
    }


def resumed_plan(wanted: dict[str, str], found: dict[str, str]) -> dict[str, str]:
    """The plan of a folder that already has files (``found``): its columns, with
    the kinds of ``wanted`` where they make the same Arrow type (``text`` and
    ``string``)."""
    return {
        name: wanted[name]
        if name in wanted and _arrow_type(wanted[name]) == _arrow_type(kind)
        else kind
        for name, kind in found.items()
    }


def folder_columns(folder: Path, names: Iterable[str]) -> dict[str, str] | None:
    """The plan of the first readable Parquet file among ``names`` in ``folder`` (a
    folder's files share one), or None when there is none."""
    import pyarrow.parquet as pq

    for name in names:
        if not name.endswith(".parquet"):
            continue
        try:
            schema = pq.read_schema(folder / name)
        except Exception:
            continue  # missing or damaged: its items are redone, its plan unknown
        return schema_columns(schema)
    return None
