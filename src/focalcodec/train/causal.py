"""Stage "causal-encoder": FocalCodec-Stream's first step, causal encoder distillation.

FocalCodec-Stream makes the whole pipeline causal. Its encoder is the same WavLM with
causal convolutions and chunked attention (each frame sees its chunk of
``1 + lookahead_size`` frames and the past); such an encoder no longer computes the
features the non-causal model was trained on. So the recipe is:

1. **causal-encoder** (this stage): the student is the causal encoder of
   ``model`` (e.g. ``focalcodec_50hz_4k_causal``), initialised from the teacher's
   weights (the key names and shapes are the same; only masks and padding differ). It
   learns to reproduce the frozen non-causal teacher's features (``distill.teacher``)
   with the length-masked squared L2 loss of the quantizer stage.
2. **quantizer** on the distilled causal features, with a causal compressor and
   decompressor (``model.pretrained`` = the export of step 1).
3. **decoder** on the same causal features, with a causal decoder.

Steps 2 and 3 are the ordinary stages run on a causal model config. The teacher's
frame i covers input samples [320 i, 320 i + 400) and the student's frame i the 400
samples ending at 320 (i + 1), so the two frame grids are offset by a quarter frame and
the student has F = ceil(N / 320) frames against floor((N - 400) / 320) + 1: frames are
paired by index and the surplus student frames are not scored.
"""

from __future__ import annotations

import torch
from torch import nn

from ..codec import FocalCodec
from ..errors import ConfigError
from .config import OptimConfig, TrainConfig
from .losses import feature_loss, frame_mask
from .model import CodecStage, build_codec, cosine, load_slot
from .stage import DataSpec, Sample, StepContext

__all__ = ["CausalEncoderStage", "EncoderNet"]


class EncoderNet(nn.Module):
    """The codec's encoder as a plain waveform -> features module."""

    def __init__(self, codec: FocalCodec) -> None:
        super().__init__()
        self.encoder = codec.encoder

    def forward(self, sig: torch.Tensor) -> torch.Tensor:
        """Waveform (B, N) -> features (B, F, D), offline (no streaming state)."""
        feats, _ = self.encoder(sig, need_state=False)
        return feats


class CausalEncoderStage(CodecStage):
    """Distil a causal encoder from a frozen non-causal one."""

    name = "causal-encoder"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        tcfg = cfg.distill.teacher
        source = tcfg.pretrained or tcfg.config
        if not source:
            raise ConfigError(
                "distill.teacher.pretrained (or .config, for random weights) is "
                "required: the non-causal codec whose encoder the student imitates"
            )
        teacher = build_codec(tcfg)
        if getattr(teacher.encoder, "causal", False):
            raise ConfigError(f"distill.teacher '{source}' has a causal encoder")
        if not getattr(self.codec.encoder, "causal", False):
            raise ConfigError(
                "the model's encoder is not causal: set model.config to a causal config "
                "or add model.overrides: {encoder_config.causal: true}"
            )
        if cfg.distill.init_from_teacher:
            load_slot(
                self.codec, "encoder", teacher, source, "distill.init_from_teacher"
            )
        self.teacher = teacher.encoder.to(device).eval().requires_grad_(False)
        self.unfreeze(self.codec.encoder)
        self.nets = {"encoder": EncoderNet(self.codec)}

    def train(self, mode: bool = True) -> None:
        # Unlike the other stages the codec's encoder is trained here; the teacher is
        # the frozen one.
        for net in self.nets.values():
            net.train(mode)
        self.teacher.eval()

    def data_spec(self) -> DataSpec:
        return DataSpec(
            input_rate=self.input_rate,
            hop=self.hop,
            cache_key=self.encoder_key(self.teacher),
        )

    def teacher_feats(self, sig: torch.Tensor) -> torch.Tensor:
        feats, _ = self.teacher(sig, need_state=False)
        return feats.float()

    def optim_groups(self) -> dict[str, tuple[list[nn.Parameter], OptimConfig]]:
        return {"encoder": (list(self.nets["encoder"].parameters()), self.cfg.optim)}

    def _loss(
        self, pred: torch.Tensor, target: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        n = min(pred.shape[1], target.shape[1])
        mask = frame_mask(frames.clamp(max=n), n)
        reduction = self.cfg.loss.feature_reduction
        return feature_loss(pred[:, :n], target[:, :n], mask, reduction), n

    def train_step(
        self, batch: dict[str, torch.Tensor], ctx: StepContext
    ) -> dict[str, float]:
        target, frames = self.frozen_feats(batch, ctx.autocast())
        with ctx.autocast():
            pred = self.runners["encoder"](batch["sig"])
        loss, _ = self._loss(pred, target, frames)
        stats = ctx.optimize("encoder", self.cfg.loss.feature_weight * loss)
        return {"loss": float(loss.detach()), **stats}

    def valid_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        target, frames = self.frozen_feats(batch)
        pred = self.nets["encoder"](batch["sig"])
        loss, n = self._loss(pred, target, frames)
        return {
            "loss": float(loss.detach()),
            "feature_mse": float(
                feature_loss(pred[:, :n], target[:, :n], frame_mask(frames, n), "mean")
            ),
            "feature_cosine": cosine(pred[:, :n], target[:, :n]),
        }

    def samples(self, batch: dict[str, torch.Tensor], index: int) -> list[Sample]:
        # Resynthesis through the codec's own (frozen) decoder: useful once the decoder
        # has been trained on causal features, noise before that.
        feats = self.nets["encoder"](batch["sig"])
        sig, _ = self.codec.decoder(feats)
        return [
            Sample(
                name=f"valid{index}",
                reference=batch["sig"][0],
                reference_rate=self.input_rate,
                output=sig[0],
                output_rate=self.codec.sample_rate_output,
            )
        ]
