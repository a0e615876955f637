"""Model cards. References: the parameter counts in ../shared/manifests (made with the
original package) and the rates of the official release (tokens/s x bits per token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from focalcodec import FocalCodec
from focalcodec.deploy.modelcard import card, render
from focalcodec.errors import ConfigError
from focalcodec.pretrained import list_models

# Official release: token rate (Hz) and codebook size per model.
RELEASE = {
    "focalcodec_50hz": (50.0, 8192),
    "focalcodec_25hz": (25.0, 8192),
    "focalcodec_12_5hz": (12.5, 8192),
    "focalcodec_50hz_65k_causal": (50.0, 65536),
    "focalcodec_50hz_4k_causal": (50.0, 4096),
    "focalcodec_50hz_2k_causal": (50.0, 2048),
}


@pytest.mark.parametrize("name", sorted(RELEASE))
def test_card_counts_match_the_original_package(data_dir: Path, name: str) -> None:
    manifest = json.loads((data_dir / "manifests" / f"{name}.json").read_text())
    info = card(name)
    for slot, count in manifest["params_per_component"].items():
        assert info["params"][slot] == count, slot
    assert info["params"]["total"] == manifest["num_total_params"]
    for key in ("sample_rate_input", "sample_rate_output", "causal", "chunk_size"):
        assert info[key] == manifest["info"][key], key
    assert info["latency"] == manifest["info"]["latency"]
    rate, codebook = RELEASE[name]
    assert info["token_rate"] == rate and info["codebook_size"] == codebook
    assert info["bitrate"] == rate * (codebook.bit_length() - 1)
    assert "huggingface.co/lucadellalib/" + name in info["source"]


def test_every_packaged_model_has_a_card() -> None:
    assert sorted(list_models()) == sorted(RELEASE)


def test_render_shows_the_card(golden_dir: Path) -> None:
    text = render("focalcodec_50hz_2k_causal")
    assert "80 ms (algorithmic)" in text
    assert "550 bit/s" in text
    assert "16000 Hz in, 24000 Hz out" in text
    assert "decoder (WaveNeXt)" in text and "Apache-2.0" in text
    case = golden_dir / "noncausal_vocos_50hz"
    text = render(FocalCodec.from_pretrained(case))
    assert "non-causal" in text and "n/a" in text
    assert f"local files: {case.resolve()}" in text


def test_card_of_an_onnx_export(tmp_path_factory, golden_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    from focalcodec.deploy.onnx_runtime import OnnxCodec
    from support import exported

    codec, out, _ = exported(tmp_path_factory, golden_dir, "causal_wavenext_50hz")
    info = card(OnnxCodec(out))
    ref = card(codec)
    assert info["params"] == ref["params"]
    for key in ("bitrate", "latency", "sample_rate_output", "config_hash"):
        assert info[key] == ref[key], key
    assert "ONNX export" in info["source"]


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        card("no_such_model")
