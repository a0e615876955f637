"""Saving and loading as the original package did: to_config / to_pretrained, JSON paths
with or without ``.json``, same-stem weights, dot-path overrides, Hub keywords."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from focalcodec import CheckpointError, FocalCodec

CASE = "causal_vocos_25hz_postnorm"


@pytest.fixture(scope="module")
def model(golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / CASE).eval()


def _sig() -> torch.Tensor:
    return 0.1 * torch.randn(1, 5120, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_to_pretrained_round_trip_without_json_suffix(model, tmp_path: Path) -> None:
    written = model.to_pretrained(str(tmp_path / "out" / "model"))
    assert written == tmp_path / "out" / "model.json"
    assert (tmp_path / "out" / "model.safetensors").is_file()
    again = FocalCodec.from_pretrained(str(tmp_path / "out" / "model"))
    assert again.model_id == str(tmp_path / "out" / "model")
    assert torch.equal(again.sig_to_toks(_sig()), model.sig_to_toks(_sig()))
    also = FocalCodec.from_pretrained(config=str(tmp_path / "out" / "model.json"))
    assert torch.equal(also.codebook, model.codebook)


def test_to_config_writes_the_architecture_only(model, tmp_path: Path) -> None:
    model.to_config(str(tmp_path / "cfg"))
    assert not (tmp_path / "cfg.safetensors").exists()
    config = json.loads((tmp_path / "cfg.json").read_text())
    assert config == model.config
    # The file builds the same architecture, with random weights.
    fresh = FocalCodec.from_config(str(tmp_path / "cfg"))
    assert fresh.config == model.config
    assert FocalCodec(**config).config == model.config
    with pytest.raises(CheckpointError) as info:
        FocalCodec.from_pretrained(str(tmp_path / "cfg.json"))
    assert isinstance(info.value, RuntimeError)


def test_config_json_with_weights_of_the_same_stem(golden_dir, tmp_path) -> None:
    # The original's local rule: "config.json" -> "config.safetensors".
    shutil.copy(golden_dir / CASE / "config.json", tmp_path / "config.json")
    shutil.copy(
        golden_dir / CASE / "model.safetensors", tmp_path / "config.safetensors"
    )
    loaded = FocalCodec.from_pretrained(str(tmp_path / "config.json"))
    assert loaded.chunk_size == 1280


def test_dot_path_overrides(golden_dir: Path) -> None:
    config = str(golden_dir / CASE / "config.json")
    model = FocalCodec.from_config(
        config,
        False,
        {"encoder_config.window_size": 24, "quantizer_config.codebook_size": 256},
    )
    assert model.encoder_config["window_size"] == 24
    assert model.codebook_size == 256


def test_hub_keywords_reach_the_download(golden_dir, monkeypatch) -> None:
    import huggingface_hub

    calls = []

    def download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        name = "config.json" if filename.endswith(".json") else "model.safetensors"
        return str(golden_dir / CASE / name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    model = FocalCodec.from_pretrained("someone/codec", revision="v1", cache_dir="/c")
    assert model.model_id == "someone/codec" and model.causal
    assert [c[:2] for c in calls] == [
        ("someone/codec", "config.json"),
        ("someone/codec", "model.safetensors"),
    ]
    assert all(c[2] == {"revision": "v1", "cache_dir": "/c"} for c in calls)
    FocalCodec.from_config("someone/sub/alt", revision="v2")
    assert calls[-1][:2] == ("someone/sub", "alt.json")


def test_unreachable_hub_model_is_a_runtime_error(monkeypatch) -> None:
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="Hugging Face Hub"):
        FocalCodec.from_pretrained("someone/missing")
