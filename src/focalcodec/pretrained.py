"""Finding, loading and saving configs and weights.

A source may be:

* a packaged name (``focalcodec_50hz``) or its Hub id (``lucadellalib/focalcodec_50hz``);
* a local directory holding ``config.json`` and ``model.safetensors`` (or ``model.pt``);
* a local ``.json`` file, whose weights are the ``.safetensors``/``.pt`` of the same stem;
* any Hub repo id ``user/repo`` or file path ``user/repo/sub/name.json``.

Hub downloads go through ``huggingface_hub``, so they are cached and work offline
(``HF_HUB_OFFLINE=1``) once cached. Weights in the v0.0.1 layout (separate q/k/v
projections) are converted on load.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .config import MAX_PARAMETERS, apply_overrides, load_config, normalize_config
from .errors import CheckpointError, ConfigError
from .fcz.limits import MAX_NAME_BYTES
from .files.atomic import atomic_write

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STREAMING_MODEL",
    "HUB_USER",
    "build",
    "check_budget",
    "convert_legacy_state_dict",
    "dump",
    "list_models",
    "load_weights",
    "packaged_config",
    "packaged_names",
    "portable_name",
    "save",
    "skeleton",
    "source_of",
]

# -- model identity: the one place that knows the official names and Hub ids -------------

HUB_USER = "lucadellalib"
DEFAULT_MODEL = "focalcodec_50hz"  # offline verbs
DEFAULT_STREAMING_MODEL = "focalcodec_50hz_2k_causal"  # focalcodec stream
_REPO_ID = re.compile(r"[\w\-]+/[\w\-.]+")


def packaged_names() -> list[str]:
    """Names of the official configs shipped with the package, e.g. focalcodec_50hz."""
    folder = resources.files("focalcodec") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def list_models() -> list[str]:
    """Names of the official models (configs shipped with the package)."""
    return packaged_names()


def _official_short(name: str) -> str | None:
    """``focalcodec_50hz`` for a packaged name or its Hub id, else None."""
    short = name.split("/")[-1]
    if short in packaged_names() and name in (short, f"{HUB_USER}/{short}"):
        return short
    return None


def packaged_config(name: str) -> dict[str, Any]:
    """The shipped config called ``name`` (with or without ``lucadellalib/``)."""
    short = _official_short(name[:-5] if name.endswith(".json") else name)
    if short is None:
        raise ConfigError(
            f"unknown model {name!r}; packaged models: {', '.join(packaged_names())}"
        )
    text = (resources.files("focalcodec") / "configs" / f"{short}.json").read_text()
    return json.loads(text)


def portable_name(model_id: str | None) -> str:
    """A name that loads the model on another machine, or ``""`` for local models.

    Packaged names are given short (``focalcodec_50hz``), other Hub ids as they are. A
    local path is never returned: it would not resolve elsewhere and would leak the
    directory layout into every file that stores the name.
    """
    name = model_id or ""
    if not name or os.path.exists(name):
        return ""
    if not (_REPO_ID.fullmatch(name) or "/" not in name):
        return ""
    name = _official_short(name) or name
    return name if len(name.encode("utf-8")) <= MAX_NAME_BYTES else ""


def source_of(name: str) -> str:
    """Where a model named ``name`` comes from, in words and a URL when there is one."""
    short = _official_short(name)
    if short is not None:
        return (
            f"official FocalCodec release: https://huggingface.co/{HUB_USER}/{short} "
            "(architecture packaged with focalcodec)"
        )
    path = Path(name).expanduser()
    if path.exists():
        return f"local files: {path.resolve()}"
    if name.count("/") >= 1:
        repo = "/".join(name.split("/")[:2])
        return f"Hugging Face Hub: https://huggingface.co/{repo}"
    return "unknown"


def skeleton(cls, source: str | Path | dict):
    """The architecture of ``source`` on the meta device: no weights, no memory.

    Enough to read every rate and size of a model without downloading it.
    """
    with torch.device("meta"):
        model = build(cls, source, False, None)
    return model


# -- loading -------------------------------------------------------------------------------


def build(cls, source, pretrained: bool, overrides: dict | None, **hub_kwargs):
    """Construct ``cls`` from ``source`` (see module docstring), with weights if asked."""
    if isinstance(source, dict):
        config, weights = source, None
        if pretrained:
            raise ConfigError("pretrained=True needs a path or repo id, not a dict")
    else:
        config, weights = _resolve(str(source), pretrained, hub_kwargs)
    where = "config" if isinstance(source, dict) else f"config of {source}"
    try:
        config = normalize_config(apply_overrides(config, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check_budget(cls, config, where)
    model = cls(**config)
    if weights is not None:
        load_weights(model, weights)
    if not isinstance(source, dict):
        model.model_id = str(source)
    return model


# What a component's constructor raises for values that are valid one by one but do
# not fit together (num_heads that does not divide dim, mismatched list lengths, ...).
_BUILD_ERRORS = (ValueError, TypeError, ZeroDivisionError, RuntimeError, IndexError)


def check_budget(cls, config: dict[str, Any], where: str = "config") -> int:
    """Build ``cls(**config)`` on the meta device (shapes only, no memory) and count
    its weights and buffers; raise :class:`ConfigError` when the config cannot be built
    or holds more than :data:`focalcodec.config.MAX_PARAMETERS` values.

    Returns
    -------
        The count.
    """
    try:
        with torch.device("meta"):
            model = cls(**config)
    except ConfigError:
        raise
    except _BUILD_ERRORS as exc:
        raise ConfigError(f"{where}: the values do not fit together ({exc})") from None
    count = sum(t.numel() for t in model.parameters())
    count += sum(t.numel() for t in model.buffers())
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"{where}: the model would hold {count:,} weights, over the "
            f"{MAX_PARAMETERS:,} allowed; the config is corrupted or not a codec"
        )
    return count


def _resolve(source: str, pretrained: bool, hub_kwargs: dict) -> tuple[dict, Any]:
    path = Path(source).expanduser()
    if not path.exists() and path.with_name(path.name + ".json").is_file():
        # The original package's rule: a local path without ".json" names that file.
        path = path.with_name(path.name + ".json")
    if path.is_dir():
        config = load_config(path / "config.json")
        return config, _local_weights(path / "config.json") if pretrained else None
    if path.suffix == ".json" and path.exists():
        return load_config(path), _local_weights(path) if pretrained else None
    names = packaged_names()
    short = _official_short(source)
    if short is not None and not pretrained:
        # The official architectures ship with the package: no download needed.
        return packaged_config(short), None
    if short is not None:
        source = f"{HUB_USER}/{short}"
    if _REPO_ID.fullmatch(source) or source.count("/") >= 2:
        return _from_hub(source, pretrained, hub_kwargs)
    raise ConfigError(
        f"{source!r} is neither a local directory, a .json file, a packaged model "
        f"({', '.join(names)}) nor a Hugging Face repo id"
    )


def _local_weights(config_json: Path) -> Path:
    stem = config_json.with_suffix("")
    # Hugging Face layout first (config.json + model.*), then the same stem.
    stems = (
        [stem.parent / "model", stem] if config_json.name == "config.json" else [stem]
    )
    for candidate in [s.with_suffix(x) for s in stems for x in (".safetensors", ".pt")]:
        if candidate.exists():
            return candidate
    stem = stems[0]
    raise CheckpointError(
        f"no weights next to {config_json}: expected {stem}.safetensors or {stem}.pt"
    )


def _from_hub(source: str, pretrained: bool, hub_kwargs: dict) -> tuple[dict, Any]:
    from huggingface_hub import hf_hub_download

    if _REPO_ID.fullmatch(source):
        repo, config_name, stem = source, "config.json", "model"
    else:
        repo, config_name = source.rsplit("/", 1)
        if not config_name.endswith(".json"):
            config_name += ".json"
        stem = config_name[:-5]
    try:
        config = load_config(hf_hub_download(repo, config_name, **hub_kwargs))
        if not pretrained:
            return config, None
        try:
            weights = hf_hub_download(repo, f"{stem}.safetensors", **hub_kwargs)
        except Exception:
            weights = hf_hub_download(repo, f"{stem}.pt", **hub_kwargs)
    except Exception as exc:
        raise CheckpointError(
            f"could not get {source!r} from the Hugging Face Hub "
            f"({type(exc).__name__}); official models are {HUB_USER}/"
            f"{{{','.join(packaged_names())}}}. Offline, pass a local directory "
            "holding config.json and model.safetensors"
        ) from None
    return config, Path(weights)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights from safetensors, or from a ``.pt`` file without unpickling code."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def load_weights(model: torch.nn.Module, weights: Path | dict) -> None:
    """Load weights into ``model`` with strict key and shape checking."""
    state = read_state_dict(weights) if not isinstance(weights, dict) else weights
    state = convert_legacy_state_dict(state, model.state_dict())
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        where = weights if not isinstance(weights, dict) else "state dict"
        problems = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                problems.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise CheckpointError(
            f"weights {where} do not fit the config: {'; '.join(problems)}"
        )
    model.load_state_dict(state, strict=True)


def convert_legacy_state_dict(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Convert a v0.0.1-layout checkpoint to the current key names.

    v0.0.1 stored separate q/k/v projections, named the compressor and decompressor
    sub-blocks by position (``layers.<i>.0`` / ``.1``), and kept an unused final encoder
    LayerNorm and an int64 quantizer mask. Sub-block names sort identically in both
    layouts, so those keys are paired by sorted order. Other dicts pass through.
    """
    if not any(p in k for k in state for p in (".q_proj.", ".k_proj.", ".v_proj.")):
        return state
    out: dict[str, torch.Tensor] = {}
    for prefix in ("compressor.", "decompressor."):
        new = sorted(k for k in target if k.startswith(prefix))
        old = sorted(k for k in state if k.startswith(prefix))
        if len(new) != len(old):
            raise CheckpointError(
                f"legacy checkpoint has {len(old)} {prefix}* tensors, the config "
                f"expects {len(new)}"
            )
        out.update(zip(new, (state[k] for k in old)))
    for key in target:
        if key.startswith(("compressor.", "decompressor.")):
            continue
        if ".qkv_proj." in key:
            parts = [key.replace(".qkv_proj.", f".{p}_proj.") for p in "qkv"]
            if all(p in state for p in parts):
                out[key] = torch.cat([state[p] for p in parts], dim=0)
        elif key in state:
            out[key] = state[key]
    return out


def dump(model, config: str | Path, pretrained: bool = False) -> Path:
    """Write the model's config to the JSON file ``config`` (``.json`` is appended if
    missing) and, with ``pretrained``, its weights to the ``.safetensors`` of the same
    stem: the original package's ``to_config`` / ``to_pretrained`` layout, which
    :func:`build` reads back. Each file is written atomically; existing files are
    replaced, as there. Returns the path of the JSON file."""
    path = Path(config).expanduser()
    if path.suffix != ".json":
        path = path.with_name(path.name + ".json")
    with atomic_write(path, force=True) as f:
        f.write((json.dumps(model.config, indent=2) + "\n").encode())
    if pretrained:
        _write_weights(model, path.with_suffix(".safetensors"))
    return path


def _write_weights(model, path: Path) -> None:
    from safetensors.torch import save as to_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path, force=True) as f:
        f.write(to_bytes(state))


def save(model, directory: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` into ``directory``, each atomically."""
    directory = Path(directory)
    _write_weights(model, directory / "model.safetensors")
    with atomic_write(directory / "config.json", force=True) as f:
        f.write((json.dumps(model.config, indent=2) + "\n").encode())
    return directory
