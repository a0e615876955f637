"""Training configs: YAML into dataclasses, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from focalcodec.errors import ConfigError
from focalcodec.train.config import (
    DataConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)

pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_nested_yaml_fills_dataclasses(tmp_path):
    path = write(
        tmp_path,
        "stage: decoder\n"
        "data:\n  batch_size: 3\n  crop_samples: 7040\n"
        "optim:\n  lr: 2e-4\n  betas: [0.8, 0.99]\n"
        "loss:\n  mel: {n_mels: 80}\n",
    )
    cfg = load_config(path)
    assert isinstance(cfg.data, DataConfig)
    assert cfg.stage == "decoder"
    assert cfg.data.batch_size == 3 and cfg.data.crop_samples == 7040
    # "2e-4" is a string for PyYAML; float fields must still accept it.
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.optim.betas == [0.8, 0.99]
    assert cfg.loss.mel.n_mels == 80
    assert cfg.loss.mel.n_fft == 1024  # untouched default


def test_overrides_parse_yaml_values(tmp_path):
    path = write(tmp_path, "stage: quantizer\ndata: {batch_size: 3}\n")
    cfg = load_config(
        path,
        [
            "data.batch_size=5",
            "optim.lr=1e-3",
            "optim.grad_clip=null",
            "log.tensorboard=true",
            "discriminator.periods=[2, 3]",
            "model.load.encoder=some/source",
        ],
    )
    assert cfg.data.batch_size == 5
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.grad_clip is None
    assert cfg.log.tensorboard is True
    assert cfg.discriminator.periods == [2, 3]
    assert cfg.model.load == {"encoder": "some/source"}


def test_apply_overrides_returns_a_copy():
    data = {"data": {"batch_size": 1}}
    out = apply_overrides(data, ["data.batch_size=2", "trainer.seed=7"])
    assert out == {"data": {"batch_size": 2}, "trainer": {"seed": 7}}
    assert data == {"data": {"batch_size": 1}}


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("data:\n  batchsize: 3\n", [], "data.batchsize"),
        ("data:\n  batch_size: three\n", [], "data.batch_size"),
        ("data:\n  batch_size: true\n", [], "data.batch_size"),
        ("trainer:\n  precision: fp8\n", [], "trainer.precision"),
        ("stage: vocoder\n", [], "stage"),
        ("data: [1, 2]\n", [], "data"),
        ("", ["nonsense"], "key.path=value"),
        ("", ["data.batch_size.x=1"], "batch_size"),
        ("optim: {betas: [0.9]}\n", [], "optim.betas"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert message in str(info.value)
    assert str(path) in str(info.value) or message == "key.path=value"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: {batch_size: [\n"))


def test_stage_argument_fills_in_or_refuses(tmp_path):
    path = write(tmp_path, "data: {batch_size: 2}\n")
    assert load_config(path, stage="decoder").stage == "decoder"
    path = write(tmp_path, "stage: quantizer\n")
    with pytest.raises(ConfigError, match="'quantizer' recipe"):
        load_config(path, stage="decoder")


def test_round_trip_through_dict():
    cfg = load_config(None, ["stage=decoder", "data.batch_size=7"])
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
    assert isinstance(again, TrainConfig)


@pytest.mark.parametrize(
    "path",
    # configs/lm/ and configs/probe/ hold other recipe kinds (tested with their code).
    sorted(
        p
        for p in (REPO / "configs").rglob("*.yaml")
        if p.parent.name not in ("lm", "probe")
    ),
    ids=lambda p: str(p.relative_to(REPO / "configs")),
)
def test_shipped_recipes_load(path):
    cfg = load_config(path)
    assert cfg.stage in path.read_text()
    assert cfg.model.config or cfg.model.pretrained
