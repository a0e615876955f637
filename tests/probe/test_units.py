"""Transcript normalisation, character and BPE units, CTC greedy decoding."""

from __future__ import annotations

import pytest
import torch

from focalcodec.errors import ConfigError
from focalcodec.probe.units import (
    BLANK,
    BpeUnits,
    CharUnits,
    ctc_greedy,
    load_units,
    make_units,
    normalize_text,
    parse_units,
)

TEXTS = [
    "the cat sat on the mat",
    "a dog ran after the cat",
    "please enter your agent number",
    "that agent is already logged on",
    "the number you have dialed is not in service",
    "press one to record your greeting",
] * 4


def test_normalize_text():
    assert normalize_text("  Hello, World!  It's   ME. ") == "hello world it's me"
    assert (
        normalize_text("Пожалуйста, проверьте номер.") == "пожалуйста проверьте номер"
    )
    assert normalize_text("...") == ""


def test_parse_units():
    assert parse_units("char") == ("char", None)
    assert parse_units("bpe:250") == ("bpe", 250)
    for bad in ("bpe", "bpe:x", "bpe:1", "word"):
        with pytest.raises(ConfigError, match="char' or 'bpe:N"):
            parse_units(bad)


def test_char_units_round_trip_and_unknown(tmp_path):
    units = CharUnits.fit(["abc", "cab d"])
    assert units.size == 6  # <unk> + " ", a, b, c, d
    ids = units.encode("bad c")
    assert min(ids) >= 2 and units.decode(ids) == "bad c"
    assert units.encode("z") == [1] and units.decode([1]) == ""
    path = tmp_path / "units.bin"
    path.write_bytes(units.to_bytes())
    again = load_units(path)
    assert again.encode("bad c") == ids and again.size == units.size


def test_bpe_units(tmp_path):
    units = make_units("bpe:60", TEXTS)
    assert isinstance(units, BpeUnits) and units.size == 60
    for text in TEXTS[:6]:
        ids = units.encode(text)
        assert all(1 <= i <= 60 for i in ids)  # 0 stays the CTC blank
        assert units.decode(ids) == text
    # Pieces merge characters: fewer units than characters.
    assert len(units.encode(TEXTS[2])) < len(TEXTS[2])
    path = tmp_path / "units.bin"
    path.write_bytes(units.to_bytes())
    assert load_units(path).encode(TEXTS[0]) == units.encode(TEXTS[0])


def test_bpe_too_many_units_is_one_clear_error():
    with pytest.raises(ConfigError, match="bpe:5000.*fewer units"):
        make_units("bpe:5000", TEXTS)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    # Frame-wise best units: 3 3 0 3 5 5 0 0 | padding.
    path = [3, 3, BLANK, 3, 5, 5, BLANK, BLANK, 4, 4]
    scores = torch.full((2, len(path), 6), -5.0)
    for t, u in enumerate(path):
        scores[0, t, u] = 0.0
        scores[1, t, 2] = 0.0
    out = ctc_greedy(scores.log_softmax(-1), torch.tensor([8, 3]))
    assert out == [[3, 3, 5], [2]]
