"""``focalcodec models``: the table of packaged models."""

from __future__ import annotations

import json

from support import run_cli


def test_models_lists_the_packaged_models(capsys):
    assert run_cli("models", "--json") == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    # Bitrates from the FocalCodec README table (SPEC section 4).
    expected = {
        "focalcodec_50hz": 650,
        "focalcodec_25hz": 325,
        "focalcodec_12_5hz": 162.5,
        "focalcodec_50hz_65k_causal": 800,
        "focalcodec_50hz_4k_causal": 600,
        "focalcodec_50hz_2k_causal": 550,
    }
    assert {n: r["bitrate"] for n, r in rows.items()} == expected
    assert rows["focalcodec_50hz_2k_causal"]["latency_ms"] == 80.0
    assert rows["focalcodec_50hz_2k_causal"]["sample_rate_output"] == 24000
    assert rows["focalcodec_50hz"]["latency_ms"] is None
    assert run_cli("models") == 0
    assert "focalcodec_12_5hz" in capsys.readouterr().out
