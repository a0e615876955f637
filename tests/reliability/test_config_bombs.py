"""A ``config.json`` is checked before anything is built: types, ranges, nesting, and a
weight budget counted on the meta device.

Before, a config with absurd sizes was allocated before the weights were looked at
(tens of GB asked for, then "internal error"), ``num_heads: 0`` was a ZeroDivisionError
and ``dim: -1`` a RuntimeError. Each case here runs in a child process whose address
space is capped at 3 GB (``RLIMIT_AS``): a config that makes the loader allocate what it
asks for dies there with MemoryError or a failed allocation, not with our one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from focalcodec.config import MAX_CONFIG_BYTES, MAX_DEPTH, load_config
from focalcodec.errors import ConfigError
from focalcodec.pretrained import packaged_config

CAP = 3 << 30  # bytes of address space for the child (torch alone needs about 1.5)

CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
    from focalcodec.errors import ConfigError, LoadError
    from focalcodec.pipeline.models import load_codec
    for path in sys.argv[3:]:
        try:
            load_codec(path, "cpu", weights=False)
        except (ConfigError, LoadError) as exc:
            text = str(exc).strip()
            print("refused" if "\\n" not in text else "multi-line", text.replace("\\n", " "))
        else:
            print("built")
    """
)


def bomb(tmp_path: Path, slot: str, key: str, value) -> Path:
    config = packaged_config("focalcodec_50hz")
    config[f"{slot}_config"][key] = value
    path = tmp_path / "bomb.json"
    path.write_text(json.dumps(config))
    return path


def load_capped(*paths: Path) -> list[str]:
    """One line per config, from one child process under the memory cap."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "-", str(CAP), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(paths), done.stdout
    return lines


BOMBS = [
    ("encoder", "num_heads", 0, "encoder_config.num_heads must be in"),
    ("encoder", "dim", -1, "encoder_config.dim must be in"),
    ("encoder", "dim", "1024", "encoder_config.dim must be an integer"),
    ("encoder", "causal", "yes", "encoder_config.causal must be true or false"),
    ("encoder", "dim", 1 << 16, "weights, over the"),  # 140 G weights
    ("compressor", "hidden_dims", [1 << 19] * 3, "weights, over the"),
    ("decoder", "num_layers", 10**6, "decoder_config.num_layers must be in"),
    ("encoder", "max_cached_steps", 10**6, "a cache of"),
    ("encoder", "num_heads", 7, "not a multiple of num_heads"),
    ("compressor", "dropout", float("inf"), "finite"),
    ("compressor", "hidden_dims", list(range(1, 200)), "list of 1 to"),
    ("quantizer", "codebook_size", 1000, "power of two"),
]


def test_config_bombs_are_one_config_error_under_a_memory_cap(tmp_path):
    paths = []
    for k, (slot, key, value, _) in enumerate(BOMBS):
        folder = tmp_path / str(k)
        folder.mkdir()
        paths.append(bomb(folder, slot, key, value))
    for (_, key, value, message), out in zip(BOMBS, load_capped(*paths), strict=True):
        assert out.startswith("refused") and message in out, (key, value, out)


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    depth = 100_000
    path.write_text('{"encoder_config": {"x": ' + "[" * depth + "]" * depth + "}}")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)
    shallow_enough = tmp_path / "nine.json"
    value: object = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    shallow_enough.write_text(json.dumps({"encoder_config": {"x": value}}))
    with pytest.raises(ConfigError, match=f"more than {MAX_DEPTH} levels"):
        load_config(shallow_enough)
    assert load_capped(path)[0].startswith("refused")


def test_a_huge_config_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text("{" + " " * (MAX_CONFIG_BYTES + 10) + "}")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_the_official_configs_pass(tmp_path):
    from focalcodec.pretrained import packaged_names

    paths = []
    for name in packaged_names():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(packaged_config(name)))
    assert load_capped(*paths) == ["built"] * len(paths)


def test_a_bomb_in_a_model_folder_is_one_line_through_the_cli(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from focalcodec.cli import main

    model = tmp_path / "model"
    model.mkdir()
    bomb(tmp_path, "encoder", "num_heads", 0).rename(model / "config.json")
    (model / "model.safetensors").write_bytes(b"never read")
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(16000, np.float32), 16000)
    code = main(["encode", str(audio), "-o", str(tmp_path / "a.fcz"), "-m", str(model)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "num_heads must be in [1," in err and "internal error" not in err
