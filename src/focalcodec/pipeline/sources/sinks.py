"""What a source's token folder holds beyond the tokens: typed Parquet columns, Shar.

``--format parquet`` gives every scalar field of the source (a Parquet column, a
``.json`` member's field, a cut's text and speaker) a Parquet column of its own, with
one type for the whole folder (:func:`source_columns`): the type the source's schema
declares (Parquet, ``save_to_disk``, ``datasets`` features), else the one its first
:data:`PEEK_ITEMS` items agree on. A field the token folder names itself is stored
as ``source_<name>`` (:func:`~focalcodec.pipeline.sources.base.stored_key`); other
fields, and values that do not fit their column, go to ``extra``
(:mod:`focalcodec.tokens.columns`).

``focalcodec tokenize SHAR_DIR -o CODES_DIR --format shar`` tokenizes the cuts of a
Shar folder into ``CODES_DIR`` (an npy token folder, for resuming and for
``TokenDataset``) and writes ``CODES_DIR/codes.00000i.tar`` for every cut shard ``i``
(:mod:`focalcodec.tokens.shar`). The Shar folder itself is only read.

``CODES_DIR`` may not be the Shar folder or lie inside a flat one:
``CutSet.from_shar(in_dir=...)`` takes every name in such a folder for a field, so one
extra file or folder there would break it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...files.atomic import resolve
from ...tokens.columns import infer_columns
from ...tokens.dataset import TokenDataset
from ...tokens.shar import check_field, field_file, write_field
from .base import Item, Shard, Source
from .lhotse import SharSource, shar_cut_ids

__all__ = ["PEEK_ITEMS", "prepare_shar", "source_columns", "write_shar"]

# Items read (not decoded) to choose the columns of a source without a schema.
PEEK_ITEMS = 64
# The token folder's own fields of every source item, with a column each.
_PLACE = {"shard": "string", "shard_row": "int64", "num_samples": "int64"}


def source_columns(source: Source, shards: list[Shard]) -> dict[str, str]:
    """The Parquet column plan of ``source``: the item's place in the source, then
    the source's scalar fields (declared, or agreed on by the first items).

    Every rank computes the same plan (same source, same first items); a folder that
    already has files keeps theirs (:class:`~focalcodec.tokens.dataset.TokenWriter`).
    """
    declared = source.column_types()
    if declared is None:
        with closing(source.read(shards)) as items:
            first = (x.record() for x in items if isinstance(x, Item))
            declared = infer_columns(islice(first, PEEK_ITEMS))
    return {**_PLACE, **{k: v for k, v in declared.items() if k not in _PLACE}}


def prepare_shar(
    source: Source, out: Path, options: Any, meta: dict[str, Any]
) -> Callable[[], None]:
    """Check that the ``shar`` format fits; returns what rank 0 runs before it opens
    the token folder (refusing foreign field files; with ``--force``, removing ours)."""
    if not isinstance(source, SharSource):
        raise InputError(
            f"{source.spec}: the shar format writes a field for a Lhotse Shar folder; "
            f"this source is {source.kind}"
        )
    folder, target = resolve(source.folder), resolve(out)
    inside = target == folder or folder in target.parents
    if inside and (source.flat or target == folder):
        raise InputError(
            f"{out}: inside the Shar folder {source.folder}, where CutSet.from_shar("
            "in_dir=...) would take it for a field; write next to it (for example "
            f"{folder.parent / (folder.name + '_codes')})"
        )
    if not options.shar_field or "." in options.shar_field or "/" in options.shar_field:
        raise InputError(
            f"--shar-field {options.shar_field!r}: a plain name, like codes"
        )

    def prepare() -> None:
        check_field(target, options.shar_field, meta, options.force)

    return prepare


def write_shar(
    out: Path, source: Source, shards: list[Shard], options: Any, meta: dict[str, Any]
) -> list[str]:
    """Write the field files from the finished token folder ``out``; one line each
    for the user (what was written, and any cuts left without tokens)."""
    ds = TokenDataset(out)
    row = {item_id: k for k, item_id in enumerate(ds.ids)}

    def tokens(cut_id: str):
        k = row.get(cut_id)
        return None if k is None else ds[k]["tokens"]

    plan = [(shard.part[0], shar_cut_ids(shard)) for shard in shards]
    field = options.shar_field
    report = write_field(out, field, plan, tokens, {**ds.meta, **meta})
    lines = [
        f"shar field {field!r}: {len(report.written)} file(s) written, "
        f"{report.kept} unchanged, in {out} ({field_file(field, 0)}, ...)"
    ]
    if report.missing:
        lines.append(
            f"{report.missing} cut(s) have no tokens (placeholders); run the command "
            "again to retry them"
        )
    return lines
