"""The ``config.json`` schema: five component slots, each a registry name + kwargs.

Files use the official 10-key layout (``encoder_name``, ``encoder_config``, ...,
``decoder_config``), so configs and checkpoints are interchangeable with the original
package. Unknown or deprecated keys inside a ``*_config`` are passed through unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_NAMES",
    "RUNTIME_KNOBS",
    "SLOTS",
    "apply_overrides",
    "config_hash",
    "identity_config",
    "legacy_config_hash",
    "load_config",
    "normalize_config",
    "registry",
]

SLOTS = ("encoder", "compressor", "quantizer", "decompressor", "decoder")
DEFAULT_NAMES = {
    "encoder": "WavLM",
    "compressor": "FocalEncoder",
    "quantizer": "BinarySphericalQuantizer",
    "decompressor": "FocalDecoder",
    "decoder": "WaveNeXt",
}


def registry() -> dict[str, type]:
    """Component classes by the names used in ``config.json``."""
    from .modules.bsq import BinarySphericalQuantizer
    from .modules.focalnet import FocalDecoder, FocalEncoder
    from .modules.vocos import Vocos
    from .modules.wavenext import WaveNeXt
    from .modules.wavlm import WavLM

    classes = [
        BinarySphericalQuantizer,
        FocalDecoder,
        FocalEncoder,
        Vocos,
        WaveNeXt,
        WavLM,
    ]
    return {cls.__name__: cls for cls in classes}


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check the top-level keys and fill in defaults: ``None`` configs become ``{}``."""
    if not isinstance(config, dict):
        raise ConfigError(f"a model config must be a JSON object, got {type(config)}")
    allowed = {f"{slot}_{part}" for slot in SLOTS for part in ("name", "config")}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown config keys {unknown}; expected some of {sorted(allowed)}"
        )
    known = registry()
    out: dict[str, Any] = {}
    for slot in SLOTS:
        name = config.get(f"{slot}_name", DEFAULT_NAMES[slot])
        if name not in known:
            raise ConfigError(
                f"unknown {slot}_name {name!r}; available: {', '.join(sorted(known))}"
            )
        kwargs = config.get(f"{slot}_config") or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{slot}_config must be a JSON object, got {kwargs!r}")
        out[f"{slot}_name"] = name
        out[f"{slot}_config"] = copy.deepcopy(kwargs)
    return out


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any] | None) -> dict:
    """Return a copy of ``config`` with dot-path overrides applied.

    ``{"encoder_config.max_cached_steps": 0}`` sets ``config["encoder_config"]
    ["max_cached_steps"]``; missing intermediate objects are created.
    """
    config = copy.deepcopy(config)
    for path, value in (overrides or {}).items():
        keys = path.split(".")
        node = config
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {path!r}: {key!r} is not an object")
            node = child
        node[keys[-1]] = value
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a ``config.json`` file (no defaults applied)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None


# Settings that change how a model runs, never what it outputs, with the value they are
# hashed as: the value of the six official configs, so that their hashes (and every .fcz
# file and token folder made with them) stay what they were before these were listed.
# The encoder's position-bias cache size only trades memory for speed (see WavLM), and
# flex attention is accepted for config compatibility only.
RUNTIME_KNOBS: dict[str, Any] = {
    "encoder_config.max_cached_steps": 2048,
    "encoder_config.use_flex_attention": False,
}


def identity_config(config: dict[str, Any]) -> dict[str, Any]:
    """The normalised config with every :data:`RUNTIME_KNOBS` entry at its hashed value.

    Two configs with the same identity build models with the same outputs from the
    same weights, so they share a hash and read each other's files.
    """
    return apply_overrides(normalize_config(config), RUNTIME_KNOBS)


def config_hash(config: dict[str, Any]) -> str:
    """16-hex-digit digest identifying an architecture (key order does not matter).

    Runtime knobs (:data:`RUNTIME_KNOBS`) do not count: overriding one keeps the hash.
    """
    return _digest(identity_config(config))


def legacy_config_hash(config: dict[str, Any]) -> str:
    """The hash as computed before :data:`RUNTIME_KNOBS` were left out.

    It differs from :func:`config_hash` only for configs whose knobs differ from the
    official values (none of the packaged models); readers accept it so that files
    written by earlier versions with such a model still decode.
    """
    return _digest(normalize_config(config))


def _digest(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
