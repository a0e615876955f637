"""Building the codec a recipe trains, and what every codec stage shares.

Every stage starts from a whole :class:`~focalcodec.FocalCodec` (random or pretrained),
freezes it, unfreezes the slots it trains, and exports the whole codec at the end. So
the stages compose: the export of one stage is the ``model.pretrained`` of the next,
and the final export loads with ``FocalCodec.from_pretrained`` like an official model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..codec import FocalCodec
from ..config import SLOTS
from ..errors import CheckpointError, ConfigError
from .cache import module_fingerprint
from .config import ModelConfig, TrainConfig
from .data import load_audio
from .stage import Stage

__all__ = [
    "CodecStage",
    "build_codec",
    "codes_bit_entropy",
    "cosine",
    "load_slot",
    "valid_frames",
]


def build_codec(mcfg: ModelConfig) -> FocalCodec:
    """The codec described by a ``model`` config block (see :class:`ModelConfig`)."""
    overrides = dict(mcfg.overrides) or None
    if mcfg.pretrained:
        codec = FocalCodec.from_pretrained(mcfg.pretrained, overrides=overrides)
    elif mcfg.config:
        codec = FocalCodec.from_config(mcfg.config, overrides=overrides)
    else:
        raise ConfigError(
            "set model.config (architecture) or model.pretrained (weights)"
        )
    for slot, source in mcfg.load.items():
        load_slot(codec, slot, FocalCodec.from_pretrained(source), source)
    return codec


def load_slot(
    codec: FocalCodec, slot: str, donor: FocalCodec, source: str, what: str = ""
) -> None:
    """Copy the weights of one slot from ``donor`` into ``codec`` (strict).

    ``what`` names the config key that asked for it, for the error message.
    """
    what = what or f"model.load.{slot}"
    if slot not in SLOTS:
        raise ConfigError(f"{what}: unknown slot '{slot}'; slots: {', '.join(SLOTS)}")
    have = getattr(codec, slot).state_dict()
    given = getattr(donor, slot).state_dict()
    problems = [k for k in have if k not in given]
    problems += [k for k in given if k not in have]
    problems += [k for k in have if k in given and have[k].shape != given[k].shape]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{what}: the {slot} of {source} does not fit the configured architecture; "
            f"differing tensors: {', '.join(problems[:3])}{more}"
        )
    getattr(codec, slot).load_state_dict(given)


def valid_frames(length: torch.Tensor, frames: int) -> torch.Tensor:
    """Valid frames per item from relative lengths (B,), ``ceil(length * frames)``."""
    count = torch.ceil(length.float() * frames).long()
    return count.clamp(min=1, max=frames)


class CodecStage(Stage):
    """A stage around a frozen :class:`~focalcodec.FocalCodec`.

    Subclasses unfreeze what they train with :meth:`unfreeze` and put it in
    ``self.nets``.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.codec = build_codec(cfg.model).to(device)
        self.codec.eval()
        self.codec.requires_grad_(False)
        self.input_rate = self.codec.sample_rate_input
        self.hop = self.codec.encoder.downsample_factor
        self._cache_key: str | None = None

    @staticmethod
    def unfreeze(*modules: nn.Module) -> None:
        """Make modules trainable again."""
        for module in modules:
            module.requires_grad_(True)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        # The frozen encoder stays in eval mode: dropout off, as at inference.
        self.codec.encoder.eval()

    def encoder_key(self, encoder: nn.Module) -> str:
        """Fingerprint of a frozen encoder, computed once, for the feature cache."""
        if self._cache_key is None:
            self._cache_key = module_fingerprint(encoder, extra=type(encoder).__name__)
        return self._cache_key

    @torch.no_grad()
    def encode_file(self, path: Path) -> torch.Tensor:
        """Frozen-encoder features (F, D) of a whole file."""
        (sig,) = load_audio(path, [self.input_rate])
        return self.teacher_feats(sig[None].to(self.device))[0]

    def teacher_feats(self, sig: torch.Tensor) -> torch.Tensor:
        """Features (B, F, D) of the frozen encoder that the stage learns from."""
        feats, _ = self.codec.encoder(sig, need_state=False)
        return feats.float()

    @torch.no_grad()
    def frozen_feats(
        self, batch: dict[str, torch.Tensor], autocast: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, F, D) and valid frame counts (B,) of a batch.

        Cached features are used when the batch has them; otherwise the frozen encoder
        runs on ``sig`` (under ``autocast`` when given).
        """
        if "feats" in batch:
            return batch["feats"].float(), batch["feats_len"]
        if autocast is not None:
            with autocast:
                feats = self.teacher_feats(batch["sig"])
        else:
            feats = self.teacher_feats(batch["sig"])
        return feats, valid_frames(batch["length"], feats.shape[1])

    def export(self, folder: Path) -> None:
        self.codec.save_pretrained(folder)

    def describe(self) -> dict[str, Any]:
        return {"codec_config": self.codec.config}

    @property
    def latent_stride(self) -> int:
        """Encoder frames per latent frame (the compressor's downsampling)."""
        return int(self.codec.compressor.downsample_factor)

    def latent_frames(self, frames: torch.Tensor, total: int) -> torch.Tensor:
        """Valid latent frames (B,) for valid encoder frames (B,)."""
        stride = self.latent_stride
        return torch.clamp((frames + stride - 1) // stride, max=total)


def codes_bit_entropy(lats: torch.Tensor) -> float:
    """Mean binary entropy (bits) of the code signs over frames; 1.0 is balanced."""
    p = (lats.reshape(-1, lats.shape[-1]) > 0).float().mean(0).clamp(1e-6, 1 - 1e-6)
    ent = -(p * p.log2() + (1 - p) * (1 - p).log2())
    return float(ent.mean())


def cosine(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cosine similarity of matching frames of two (B, F, D) tensors."""
    sim = torch.nn.functional.cosine_similarity(pred.float(), target.float(), dim=-1)
    return float(sim.mean())
