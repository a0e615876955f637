"""The dataset card of a Parquet token folder: what it says, and that a README the
user wrote is never overwritten."""

from __future__ import annotations

import pytest

from focalcodec.tokens.card import write_card
from focalcodec.tokens.dataset import write_tokens

pytest.importorskip("pyarrow")

META = {"model_name": "focalcodec_50hz", "codebook_size": 8192, "token_rate": 50.0}


def test_card_names_the_model_and_the_command(tmp_path):
    items = [{"id": "a", "tokens": [1, 2], "duration": 1800.0}] * 1
    write_tokens(tmp_path, items + [{"id": "b", "tokens": [3], "duration": 1800.0}],
                 META, fmt="parquet")  # fmt: skip
    lines = write_card(tmp_path, "parquet: corpus/", "focalcodec tokenize corpus/ -o x")
    assert lines == [f"dataset card: {tmp_path / 'README.md'}"]
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nconfigs:")
    assert "| model | `focalcodec_50hz` |" in card
    assert "| token rate | 50.0 tokens per second |" in card
    assert "| codebook size | 8192 (13 bits per token) |" in card
    assert "| items | 2 (1.00 h of audio) |" in card
    assert "focalcodec tokenize corpus/ -o x" in card and "`parquet: corpus/`" in card


def test_a_readme_of_the_user_is_left_alone(tmp_path):
    write_tokens(tmp_path, [{"id": "a", "tokens": [1]}], META, fmt="parquet")
    (tmp_path / "README.md").write_text("my notes\n")
    lines = write_card(tmp_path)
    assert "left alone" in lines[0]
    assert (tmp_path / "README.md").read_text() == "my notes\n"
