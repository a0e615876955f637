"""Training checkpoints: weights, optimizer/scheduler state and a JSON description.

Layout of one checkpoint, ``<run_dir>/checkpoints/step_00001000/``:

* ``model.safetensors``: the trained modules, keys ``<module name>.<parameter>``;
* ``state.pt``: optimizer, scheduler and gradient-scaler states and the loop position,
  plain tensors and containers only, so it loads with ``torch.load(weights_only=True)``;
* ``meta.json``: the stage, the step, the resolved config and the codec config.

A checkpoint is written into a hidden temporary folder and renamed into place, so a
folder named ``step_*`` is always complete. Only the trained modules are stored (the
frozen encoder comes back from the model source of the config).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "Checkpoint",
    "flat_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_flat_weights",
    "save_checkpoint",
]

_NAME = re.compile(r"^step_(\d{8,})$")


class Checkpoint(dict):
    """Loaded checkpoint: keys ``weights``, ``state``, ``meta`` and ``path``."""


def _folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = _folder(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write a checkpoint atomically and delete all but the ``keep`` newest.

    Parameters
    ----------
    run_dir
        Run folder.
    step
        Optimisation steps done; names the checkpoint.
    weights
        Flat name -> tensor map of the trained modules.
    state
        Optimizer/scheduler/loop state (tensors and plain containers only).
    meta
        JSON-serialisable description.
    keep
        Number of checkpoints to keep (at least 1).

    Returns
    -------
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    folder = _folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:08d}"
    tmp = folder / f".tmp_{final.name}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        save_file(cpu, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        text = json.dumps({**meta, "step": step}, indent=2, sort_keys=True)
        (tmp / "meta.json").write_text(text + "\n", encoding="utf-8")
        if final.exists():
            # Same step saved twice (e.g. the final save right after a periodic one).
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        weights = load_file(str(path / "model.safetensors"))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return Checkpoint(weights=weights, state=state, meta=meta, path=path)


def flat_weights(nets: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One ``<module name>.<key>`` map of the state dicts of several modules."""
    out = {}
    for name, net in nets.items():
        for key, value in net.state_dict().items():
            out[f"{name}.{key}"] = value
    return out


def load_flat_weights(
    nets: dict[str, nn.Module], weights: dict[str, torch.Tensor], source: Path
) -> None:
    """Inverse of :func:`flat_weights`, strict for every module."""
    names = {key.split(".", 1)[0] for key in weights}
    if names != set(nets):
        raise CheckpointError(
            f"{source} holds modules {sorted(names)}, the stage trains {sorted(nets)}"
        )
    for name, net in nets.items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{source}: weights of '{name}' do not fit the configured model "
                f"({str(exc).splitlines()[0]})"
            ) from exc
