"""Export trained weights in the ``FocalCodec.from_pretrained`` layout.

An export folder holds ``config.json`` (the official 10-key schema) and
``model.safetensors`` with every slot, trained or frozen, so it loads exactly like an
official model::

    codec = FocalCodec.from_pretrained("runs/quantizer/export")
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from ..files.atomic import OutputExistsError, atomic_folder

__all__ = ["export_checkpoint", "resolve_checkpoint"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or the newest checkpoint of a run folder."""
    from .checkpoint import latest_checkpoint

    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(
            f"{path} is neither a checkpoint nor a run with checkpoints"
        )
    return found


def export_checkpoint(
    checkpoint: str | Path, output: str | Path, force: bool = False
) -> Path:
    """Rebuild a stage from a checkpoint and export its codec.

    The frozen slots come from the ``model`` block saved in the checkpoint's config,
    so its sources must still be reachable.

    Parameters
    ----------
    checkpoint
        A checkpoint folder or a run folder (its newest checkpoint is used).
    output
        Export folder.
    force
        Replace an existing ``output``.

    Returns
    -------
        The checkpoint that was exported.
    """
    from .checkpoint import load_checkpoint, load_flat_weights
    from .config import config_from_dict
    from .runner import build_stage

    path = resolve_checkpoint(checkpoint)
    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass --force to replace it")
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["meta"]["config"])
    cfg.validate()
    stage = build_stage(cfg, torch.device("cpu"))
    load_flat_weights(stage.nets, ckpt["weights"], path)
    atomic_folder(stage.export, output, force=force)
    return path
