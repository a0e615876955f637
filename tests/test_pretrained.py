"""Loading and saving: local folders and files, the Hub cache offline, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from focalcodec import CheckpointError, ConfigError, FocalCodec
from focalcodec.config import apply_overrides
from focalcodec.pretrained import packaged_config


@pytest.fixture
def case(golden_dir: Path) -> Path:
    return golden_dir / "noncausal_vocos_50hz"


def _same_weights(a: FocalCodec, b: FocalCodec) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_local_json_with_same_stem_weights(case: Path, tmp_path: Path) -> None:
    shutil.copy(case / "config.json", tmp_path / "tiny.json")
    shutil.copy(case / "model.safetensors", tmp_path / "tiny.safetensors")
    a = FocalCodec.from_pretrained(case)
    b = FocalCodec.from_pretrained(tmp_path / "tiny.json")
    assert _same_weights(a, b)
    assert b.model_id == str(tmp_path / "tiny.json")


def test_pt_checkpoint_is_loaded_without_pickle(case: Path, tmp_path: Path) -> None:
    reference = FocalCodec.from_pretrained(case)
    shutil.copy(case / "config.json", tmp_path / "config.json")
    torch.save(reference.state_dict(), tmp_path / "model.pt")
    assert _same_weights(reference, FocalCodec.from_pretrained(tmp_path))


class _Payload:
    pass


def test_pt_checkpoint_with_objects_is_refused(case: Path, tmp_path: Path) -> None:
    shutil.copy(case / "config.json", tmp_path / "config.json")
    torch.save({"x": _Payload()}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        FocalCodec.from_pretrained(tmp_path)


def test_save_pretrained_round_trip(case: Path, tmp_path: Path) -> None:
    model = FocalCodec.from_pretrained(case).eval()
    out = model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert list(config) == [
        f"{s}_{p}"
        for s in ("encoder", "compressor", "quantizer", "decompressor", "decoder")
        for p in ("name", "config")
    ]
    again = FocalCodec.from_pretrained(out).eval()
    assert _same_weights(model, again)
    sig = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        assert torch.equal(model.sig_to_toks(sig), again.sig_to_toks(sig))


def test_deprecated_vocos_keys_are_kept_on_save(
    golden_dir: Path, tmp_path: Path
) -> None:
    model = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_12_5hz_legacy")
    model.save_pretrained(tmp_path)
    decoder = json.loads((tmp_path / "config.json").read_text())["decoder_config"]
    assert decoder["input_channels"] == 64 and "padding" in decoder


def test_wrong_checkpoint_lists_offending_keys(
    golden_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(golden_dir / "causal_wavenext_50hz" / "config.json", tmp_path)
    shutil.copy(golden_dir / "noncausal_vocos_50hz" / "model.safetensors", tmp_path)
    with pytest.raises(CheckpointError) as err:
        FocalCodec.from_pretrained(tmp_path)
    message = str(err.value)
    assert "do not fit the config" in message
    assert "missing" in message and "wrong shape" in message


def test_missing_weights_file(case: Path, tmp_path: Path) -> None:
    shutil.copy(case / "config.json", tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        FocalCodec.from_pretrained(tmp_path)


def test_unknown_component_and_keys() -> None:
    with pytest.raises(ConfigError, match="available: .*WavLM"):
        FocalCodec(decoder_name="HiFiGAN")
    with pytest.raises(ConfigError, match="unknown config keys"):
        FocalCodec.from_config({"encoder_nam": "WavLM"})
    with pytest.raises(ConfigError, match="encoder_config for WavLM"):
        FocalCodec(encoder_config={"num_layer": 2})
    with pytest.raises(ConfigError, match="neither a local directory"):
        FocalCodec.from_config("focalcodec_99hz")


def test_overrides_dot_paths(golden_dir: Path) -> None:
    base = packaged_config("focalcodec_50hz")
    changed = apply_overrides(base, {"encoder_config.num_layers": 2, "extra.a.b": 1})
    assert changed["encoder_config"]["num_layers"] == 2 and changed["extra"] == {
        "a": {"b": 1}
    }
    assert base["encoder_config"]["num_layers"] == 6
    model = FocalCodec.from_pretrained(
        golden_dir / "noncausal_vocos_50hz",
        overrides={"encoder_config.max_cached_steps": 0},
    )
    assert model.encoder.max_cached_steps == 0


def test_packaged_config_without_weights() -> None:
    with torch.device("meta"):
        model = FocalCodec.from_config("lucadellalib/focalcodec_12_5hz")
    assert model.token_rate == 12.5 and model.bitrate == 162.5


HUB_SCRIPT = """
import sys, torch
from focalcodec import FocalCodec, CheckpointError
model = FocalCodec.from_pretrained(sys.argv[1])
print("loaded", model.model_id, sum(v.numel() for v in model.state_dict().values()))
try:
    FocalCodec.from_pretrained("someone/not_cached")
except CheckpointError as exc:
    print("error", str(exc).splitlines()[0][:60])
"""


def _fake_hub_cache(root: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay out ``files`` as huggingface_hub stores a downloaded snapshot."""
    commit = "0" * 40
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_hub_repo_id_loads_offline_from_cache(case: Path, tmp_path: Path) -> None:
    _fake_hub_cache(
        tmp_path,
        "lucadellalib/focalcodec_50hz",
        {
            "config.json": case / "config.json",
            "model.safetensors": case / "model.safetensors",
        },
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1")
    for source in ("lucadellalib/focalcodec_50hz", "focalcodec_50hz"):
        run = subprocess.run(
            [sys.executable, "-c", HUB_SCRIPT, source],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        expected = sum(
            v.numel() for v in FocalCodec.from_pretrained(case).state_dict().values()
        )
        assert f"loaded {source} {expected}" in run.stdout
        assert "error could not get 'someone/not_cached'" in run.stdout
