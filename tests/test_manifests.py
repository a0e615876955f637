"""Full-size architectures: state-dict keys, shapes and dtypes equal the manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.pretrained import (
    convert_legacy_state_dict,
    packaged_config,
    packaged_names,
)

NAMES = [
    "focalcodec_50hz",
    "focalcodec_25hz",
    "focalcodec_12_5hz",
    "focalcodec_50hz_65k_causal",
    "focalcodec_50hz_4k_causal",
    "focalcodec_50hz_2k_causal",
]


def _manifest(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "manifests" / f"{name}.json").read_text())


def _meta_model(name: str) -> FocalCodec:
    # The meta device builds the architecture without allocating ~1 GB of weights.
    with torch.device("meta"):
        return FocalCodec(**packaged_config(name))


def test_packaged_configs_are_the_official_six(data_dir: Path) -> None:
    assert packaged_names() == sorted(NAMES)
    for name in NAMES:
        shipped = packaged_config(name)
        official = json.loads((data_dir / "configs" / f"{name}.json").read_text())
        assert shipped == official


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_manifest(data_dir: Path, name: str) -> None:
    manifest = _manifest(data_dir, name)
    model = _meta_model(name)
    state = model.state_dict()
    expected = manifest["state_dict"]
    assert list(state) == list(expected)
    for key, spec in expected.items():
        assert list(state[key].shape) == spec["shape"], key
        assert str(state[key].dtype).removeprefix("torch.") == spec["dtype"], key
    assert sum(v.numel() for v in state.values()) == manifest["num_total_params"]
    for part, count in manifest["params_per_component"].items():
        assert (
            sum(p.numel() for p in getattr(model, part).state_dict().values()) == count
        )


@pytest.mark.parametrize("name", NAMES)
def test_derived_properties_match_manifest(data_dir: Path, name: str) -> None:
    info = _manifest(data_dir, name)["info"]
    model = _meta_model(name)
    assert model.sample_rate_input == info["sample_rate_input"]
    assert model.sample_rate_output == info["sample_rate_output"]
    assert model.causal == info["causal"]
    assert model.chunk_size == info["chunk_size"]
    assert model.latency == info["latency"]


@pytest.mark.parametrize("name", [n for n in NAMES if "causal" not in n])
def test_legacy_layout_converts_to_manifest(data_dir: Path, name: str) -> None:
    """A checkpoint in the released v0.0.1 layout maps onto every current key."""
    legacy = _manifest(data_dir, name)["legacy_v001_layout"]["state_dict"]
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    old = {
        k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta")
        for k, v in legacy.items()
    }
    target = _meta_model(name).state_dict()
    new = convert_legacy_state_dict(old, target)
    assert list(sorted(new)) == list(sorted(target))
    for key, value in target.items():
        assert new[key].shape == value.shape, key
