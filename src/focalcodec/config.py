"""The ``config.json`` schema: five component slots, each a registry name + kwargs.

Files use the official 10-key layout (``encoder_name``, ``encoder_config``, ...,
``decoder_config``), so configs and checkpoints are interchangeable with the original
package. Unknown or deprecated keys inside a ``*_config`` are passed through unchanged.

A config is untrusted input: a ``config.json`` of 1 kB could ask for terabytes. Before
anything is built, :func:`normalize_config` checks every value the components declare
(:func:`check_values`: its type from the constructor's annotation, sizes at least 1 and
at most :data:`MAX_SIZE`, at most :data:`MAX_LIST` entries in a list or layers in a
stack, dropout in [0, 1), finite floats, nesting at most :data:`MAX_DEPTH` deep, the
encoder's position-bias cache within :data:`MAX_CACHE_VALUES`); :func:`focalcodec.pretrained.build` then counts the
model's weights on the meta device (no memory) against :data:`MAX_PARAMETERS`. Each
problem is a :class:`~focalcodec.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_NAMES",
    "MAX_CACHE_VALUES",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_PARAMETERS",
    "MAX_SIZE",
    "RUNTIME_KNOBS",
    "SLOTS",
    "apply_overrides",
    "check_values",
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
# Bounds of a config (docs/reliability.md). The six official models use at most
# 4096 (sizes), 8 (list entries), 2048 * 2048 * 16 cache values and 249 M weights.
MAX_CONFIG_BYTES = 1 << 20  # a config.json file
MAX_DEPTH = 8  # objects and lists inside one another
MAX_SIZE = 1 << 20  # any integer setting (widths, kernels, hops, windows, counts)
MAX_LIST = 64  # entries of a list setting (hidden_dims, strides, ...)
MAX_PARAMETERS = 1_000_000_000  # weights and buffers of a model: 4 GB of float32
MAX_CACHE_VALUES = 1 << 28  # the encoder's position-bias cache: steps^2 x heads
# Integer settings that may be 0 (0: no cache, no lookahead, no padding).
_MAY_BE_ZERO = frozenset({"max_cached_steps", "lookahead_size", "padding"})
# Integer settings that count modules built one by one: at most MAX_LIST.
_COUNTS = frozenset({"num_layers", "focal_level"})


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
    _check_depth(config)
    known = registry()
    out: dict[str, Any] = {}
    for slot in SLOTS:
        name = config.get(f"{slot}_name", DEFAULT_NAMES[slot])
        if not isinstance(name, str) or name not in known:
            raise ConfigError(
                f"unknown {slot}_name {name!r:.80}; available: "
                f"{', '.join(sorted(known))}"
            )
        kwargs = config.get(f"{slot}_config") or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(
                f"{slot}_config must be a JSON object, got {kwargs!r:.80}"
            )
        check_values(slot, known[name], kwargs)
        out[f"{slot}_name"] = name
        out[f"{slot}_config"] = copy.deepcopy(kwargs)
    _check_cache(out["encoder_config"], known[out["encoder_name"]])
    return out


def _check_depth(config: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH (walked without recursion)."""
    todo = [(config, 0)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"the config is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            todo.extend((v, depth + 1) for v in value)


@functools.cache
def _declared(cls: type) -> dict[str, tuple[str, Any]]:
    """Constructor arguments of a component: name -> (annotation text, default)."""
    params = inspect.signature(cls.__init__).parameters
    return {
        name: (str(p.annotation), p.default)
        for name, p in params.items()
        if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def check_values(slot: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` unless every declared setting of ``kwargs`` has the
    type its constructor annotates and a value in range (see the module docstring).
    Undeclared keys are left to the constructor (which refuses them by name)."""
    for key, (note, default) in _declared(cls).items():
        if key not in kwargs:
            continue
        value, where = kwargs[key], f"{slot}_config.{key}"
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_LIST:
                raise ConfigError(
                    f"{where} must be a list of 1 to {MAX_LIST} integers, got "
                    f"{value!r:.80}"
                )
            for item in value:
                _check_int(where, item, key)
        elif value is None and "None" in note:
            continue
        elif note.startswith("bool"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r:.80}")
        elif note.startswith("int"):
            _check_int(where, value, key)
        elif note.startswith("float"):
            _check_float(where, value, key)
    dim, heads = kwargs.get("dim"), kwargs.get("num_heads")
    if (
        "num_heads" in _declared(cls)
        and isinstance(dim, int)
        and isinstance(heads, int)
    ):
        if dim % heads:
            raise ConfigError(
                f"{slot}_config.dim={dim} is not a multiple of num_heads={heads}"
            )


def _check_int(where: str, value: Any, key: str) -> None:
    low = 0 if key in _MAY_BE_ZERO else 1
    high = 2**31 if key == "codebook_size" else MAX_SIZE
    high = MAX_LIST if key in _COUNTS else high
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r:.80}")
    if not low <= value <= high:
        raise ConfigError(f"{where} must be in [{low}, {high}], got {value}")


def _check_float(where: str, value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r:.80}")
    if not math.isfinite(value) or abs(value) > MAX_SIZE:
        raise ConfigError(f"{where} must be a finite number, got {value}")
    if key == "dropout" and not 0.0 <= value < 1.0:
        raise ConfigError(f"{where} must be in [0, 1), got {value}")


def _check_cache(kwargs: dict[str, Any], cls: type) -> None:
    """The encoder's position-bias cache (steps^2 x heads values) within its budget."""
    declared = _declared(cls)
    if "max_cached_steps" not in declared or "num_heads" not in declared:
        return
    steps = kwargs.get("max_cached_steps", declared["max_cached_steps"][1])
    heads = kwargs.get("num_heads", declared["num_heads"][1])
    if steps * steps * heads > MAX_CACHE_VALUES:
        raise ConfigError(
            f"encoder_config: max_cached_steps={steps} with num_heads={heads} asks for "
            f"a cache of {steps * steps * heads} values, over the {MAX_CACHE_VALUES} "
            "allowed; lower max_cached_steps"
        )


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
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config {path} is larger than {MAX_CONFIG_BYTES} bytes; not a config"
            )
        config = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply") from None
    try:
        _check_depth(config)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    return config


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
