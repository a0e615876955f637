"""LM folders on disk: ``config.json`` + ``model.safetensors``, and the LM's identity.

Layout of an LM folder (what ``focalcodec lm train`` exports)::

    config.json          {"format": "focalcodec-lm", "version": 1, "config": {...}}
    model.safetensors    float32 weights, keys as in TokenLM.state_dict()

No pickle anywhere. :func:`lm_hash` is the identity that entropy-coded ``.fcz`` files
record: SHA-256 over the canonical config JSON and every tensor's name, dtype, shape and
bytes, so a retrained or edited LM (same architecture, other weights) is told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..files.atomic import atomic_write
from .model import LMConfig

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "WEIGHTS_NAME",
    "lm_hash",
    "load_lm",
    "read_lm_folder",
    "save_lm",
]

FORMAT = "focalcodec-lm"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _canonical(cfg: LMConfig) -> bytes:
    return json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def lm_hash(cfg: LMConfig, weights: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 of an LM's config and weights.

    Parameters
    ----------
    cfg
        The architecture.
    weights
        Name -> array (float32, as stored).

    Returns
    -------
        64 hex digits; ``.fcz`` headers keep the first 8 bytes.
    """
    digest = hashlib.sha256(_canonical(cfg))
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def read_lm_folder(path: str | os.PathLike) -> tuple[LMConfig, dict[str, np.ndarray]]:
    """Config and float32 numpy weights of an LM folder (no torch needed).

    Raises :class:`~focalcodec.errors.CheckpointError` when the folder is not an LM
    folder or its files are unreadable.
    """
    from safetensors.numpy import load_file

    folder = Path(path)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(
            f"{folder} is not a token-LM folder (it needs {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}, as written by 'focalcodec lm train')"
        )
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        weights = load_file(str(w_path))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read token LM {folder}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a {FORMAT} config")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: LM format version {meta.get('version')} is not supported "
            f"(this focalcodec reads version {FORMAT_VERSION})"
        )
    try:
        cfg = LMConfig.from_dict(meta.get("config", {}))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from exc
    return cfg, {k: v.astype(np.float32, copy=False) for k, v in weights.items()}


def save_lm(folder: str | os.PathLike, cfg: LMConfig, state: dict[str, Any]) -> str:
    """Write an LM folder; returns its :func:`lm_hash`.

    Parameters
    ----------
    folder
        Output folder (created; files inside are written atomically).
    cfg
        The architecture.
    state
        ``TokenLM.state_dict()`` (tensors) or name -> numpy array.
    """
    from safetensors.numpy import save

    weights = {k: _to_numpy(v) for k, v in state.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict()}
    with atomic_write(folder / CONFIG_NAME, force=True) as fileobj:
        fileobj.write((json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    with atomic_write(folder / WEIGHTS_NAME, force=True) as fileobj:
        fileobj.write(save(weights, metadata={"format": FORMAT}))
    return lm_hash(cfg, weights)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def load_lm(path: str | os.PathLike, device: Any = "cpu"):
    """A :class:`~focalcodec.lm.model.TokenLM` from an LM folder, in eval mode.

    Parameters
    ----------
    path
        The LM folder.
    device
        Where to put it.
    """
    import torch

    from .model import TokenLM

    cfg, weights = read_lm_folder(path)
    model = TokenLM(cfg)
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the config ({str(exc).splitlines()[0]})"
        ) from exc
    model.lm_hash = lm_hash(cfg, weights)
    return model.to(device).eval()
