"""A Hugging Face dataset card (``README.md``) for a Parquet token folder.

The card's YAML header tells ``datasets.load_dataset(folder)`` which files hold the
data; its body names the model (name, config hash, token rate, codebook size), the
source and the command that made the folder, and shows how to load it. A ``README.md``
that this package did not write (it lacks :data:`MARK`) is never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..files.atomic import atomic_write
from .columns import FILE_COLUMNS, folder_columns
from .files import INDEX, is_data_file, read_jsonl, read_meta

__all__ = ["CARD", "MARK", "render_card", "write_card"]

CARD = "README.md"
MARK = (
    "<!-- written by focalcodec tokenize; delete this line to keep your own edits -->"
)


_TEMPLATE = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: "part-*.parquet"
tags:
- audio-tokens
- speech
- focalcodec
---
{mark}

# Speech tokens from {title}

Discrete speech tokens (one codebook, one token per frame) made by
`focalcodec tokenize`.

| | |
|---|---|
{table}

## How it was made

{made}

## Loading

```python
import datasets

ds = datasets.load_dataset("parquet", data_files="part-*.parquet", split="train")
ds[0]["tokens"]  # the item's tokens, {rate} per second of audio
```

(run it in this folder, or give the folder's path in ``data_files``; the
``focalcodec.tokens.dataset.TokenDataset`` reader gives the items in source order.)

## Columns

`id`, `path` (the file the audio was read from), `tokens`, `num_tokens`,
`duration` (seconds){fixed}, and `extra`: every other field as a JSON object (fields
of other kinds, and any value that does not fit its column's type, which is null
there).
"""


def render_card(
    meta: dict[str, Any],
    *,
    items: int,
    seconds: float,
    source: str | None = None,
    command: str | None = None,
    columns: dict[str, str] | None = None,
) -> str:
    """The text of the card (see the module docstring); ``columns`` is the plan of
    the folder's files (:mod:`focalcodec.tokens.columns`)."""
    name = meta.get("model_name")
    rows = [
        ("model", f"`{name or '(unnamed)'}`"),
        ("config hash", f"`{meta.get('config_hash')}`"),
        ("token rate", f"{meta.get('token_rate')} tokens per second"),
        (
            "codebook size",
            f"{meta['codebook_size']} ({meta['bits_per_token']} bits per token)",
        ),
        ("token type", f"list of {meta.get('dtype', 'uint16')}"),
        ("input sample rate", f"{meta.get('sample_rate')} Hz"),
        ("items", f"{items} ({seconds / 3600:.2f} h of audio)"),
    ]
    if source:
        rows.append(("source", f"`{source}`"))
    return _TEMPLATE.format(
        mark=MARK,
        title=f"FocalCodec `{name}`" if name else "a FocalCodec model",
        table="\n".join(f"| {k} | {v} |" for k, v in rows),
        made=f"```bash\n{command}\n```" if command else "(not recorded)",
        rate=meta.get("token_rate"),
        fixed="".join(
            f", `{name}` ({'string' if kind == 'text' else kind})"
            for name, kind in (FILE_COLUMNS if columns is None else columns).items()
        ),
    )


def write_card(
    folder: str | os.PathLike,
    source: str | None = None,
    command: str | None = None,
) -> list[str]:
    """Write (or refresh) the card of a finished Parquet token folder (the model is
    the one its ``meta.json`` names).

    Returns
    -------
        One line for the user: where the card is, or why none was written.
    """
    folder = Path(folder)
    path = folder / CARD
    if path.exists() and MARK not in path.read_text(encoding="utf-8", errors="replace"):
        return [f"{path}: not written by focalcodec, left alone (no dataset card)"]
    meta = read_meta(folder)
    records = read_jsonl(folder / INDEX)
    seconds = sum(float(r.get("duration") or 0.0) for r in records)
    names = sorted(p.name for p in folder.iterdir() if is_data_file(p.name))
    text = render_card(
        meta,
        items=len(records),
        seconds=seconds,
        source=source,
        command=command,
        columns=folder_columns(folder, names),
    )
    with atomic_write(path, force=True) as fileobj:
        fileobj.write(text.encode("utf-8"))
    return [f"dataset card: {path}"]
