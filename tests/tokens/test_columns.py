"""Typed Parquet columns of a token folder: one schema per folder, and values that do
not fit their column's type kept in ``extra`` instead of breaking the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from focalcodec.errors import InputError
from focalcodec.tokens.columns import infer_columns
from focalcodec.tokens.dataset import TokenDataset, write_tokens

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

META = {"codebook_size": 1024}
PLAN = {"name": "string", "age": "int64", "small": "uint8", "score": "float32",
        "exact": "float64", "ok": "bool"}  # fmt: skip


def read(folder) -> tuple[list[pa.Schema], list[dict]]:
    files = sorted(folder.glob("part-*.parquet"))
    return [pq.read_schema(f) for f in files], pq.read_table(files).to_pylist()


def item(item_id: str, **fields) -> dict:
    return {"id": item_id, "tokens": np.array([1, 2, 3]), **fields}


def test_each_planned_field_gets_its_arrow_type(tmp_path):
    items = [item("a", name="x", age=-(2**63), small=255, score=0.5, exact=3, ok=True,
                  words=["a", "b"]), item("b")]  # fmt: skip
    write_tokens(tmp_path, items, META, fmt="parquet", columns=PLAN)
    (schema,), rows = read(tmp_path)
    assert schema.names == ["id", "path", "tokens", "num_tokens", "duration",
                            *PLAN, "extra"]  # fmt: skip
    assert [str(schema.field(k).type) for k in PLAN] == [
        "string", "int64", "uint8", "float", "double", "bool",
    ]  # fmt: skip
    first = {k: rows[0][k] for k in PLAN}
    assert first == {"name": "x", "age": -(2**63), "small": 255, "score": 0.5,
                     "exact": 3.0, "ok": True}  # fmt: skip
    assert json.loads(rows[0]["extra"]) == {"words": ["a", "b"]}  # not scalar
    assert all(rows[1][k] is None for k in PLAN) and rows[1]["extra"] == "{}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 5),
        ("name", "\ud800"),  # a lone surrogate (a JSON escape) is no UTF-8
        ("age", "12"),
        ("age", 2**63),
        ("age", True),
        ("age", 1.0),
        ("small", 256),
        ("small", -1),
        ("score", 1e39),  # float32 would make it inf
        ("exact", 2**53 + 1),  # a float would round it
        ("exact", "1.5"),
        ("ok", 1),
        ("ok", {"a": 1}),
    ],
)
def test_a_value_that_does_not_fit_waits_in_extra(tmp_path, field, value):
    items = [item("a", **{field: value}), item("b", **{field: None})]
    write_tokens(tmp_path, items, META, fmt="parquet", columns=PLAN)
    _, rows = read(tmp_path)
    assert rows[0][field] is None and json.loads(rows[0]["extra"]) == {field: value}
    assert TokenDataset(tmp_path, verify=True)[0][field] == value  # the index keeps it


def test_files_keep_text_columns_by_default(tmp_path):
    items = [item("a", speaker=1272, text="hi", room="b")]
    write_tokens(tmp_path, items, META, fmt="parquet")
    (schema,), rows = read(tmp_path)
    assert schema.names[5:] == ["speaker", "language", "text", "split", "extra"]
    assert rows[0]["speaker"] == "1272" and rows[0]["text"] == "hi"
    assert json.loads(rows[0]["extra"]) == {"room": "b"}


def test_a_resumed_folder_keeps_the_columns_of_its_files(tmp_path):
    write_tokens(tmp_path, [item("a", age=1)], META, fmt="parquet",
                 columns={"age": "int64"})  # fmt: skip
    # The second writer asks for other columns: the folder's files decide.
    write_tokens(tmp_path, [item("b", age=2, name="n")], META, fmt="parquet",
                 columns={"name": "string", "age": "float64"})  # fmt: skip
    schemas, rows = read(tmp_path)
    assert len(schemas) == 2 and schemas[0] == schemas[1]
    assert str(schemas[1].field("age").type) == "int64" and "name" not in schemas[1]
    assert [r["age"] for r in rows] == [1, 2]
    assert json.loads(rows[1]["extra"]) == {"name": "n"}


def test_plans_naming_our_columns_or_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(InputError, match="'tokens': a column of the token folder"):
        write_tokens(tmp_path / "a", [item("a")], META, fmt="parquet",
                     columns={"tokens": "string"})  # fmt: skip
    with pytest.raises(InputError, match="unknown kind 'int128'"):
        write_tokens(tmp_path / "b", [item("a")], META, fmt="parquet",
                     columns={"x": "int128"})  # fmt: skip


def test_columns_are_inferred_from_values_that_agree():
    records = [
        {"id": "a", "n": 1, "x": 1, "s": "a", "b": True, "mixed": 1, "none": None},
        {"id": "b", "n": 2, "x": 2.5, "s": None, "b": False, "mixed": "1", "l": [1]},
    ]
    assert infer_columns(records, skip=("b",)) == {
        "n": "int64", "x": "float64", "s": "string",
    }  # fmt: skip
    assert infer_columns([{"flag": True}, {"flag": 1}]) == {}
