"""Stage "quantizer": compressor + BSQ + decompressor on frozen encoder features.

    feats --compressor--> y --L2 normalise--> lats --BSQ (straight-through)--> codes
    codes --decompressor--> qfeats            loss = w_f * |qfeats - feats|^2
                                                    + w_e * entropy(lats)

* The feature loss is the squared L2 distance per frame, averaged over the valid
  (unpadded) frames; ``loss.feature_reduction: mean`` also divides by the feature
  width, which keeps the scale independent of D.
* The entropy regulariser is ``BinarySphericalQuantizer.entropy_loss``: the mean
  per-frame entropy of the soft code assignment (push each latent towards a corner)
  minus ``loss.diversity_weight`` times the entropy of the batch-average assignment
  (use the whole codebook). Weight 0.1 in the paper.
* The decompressor may return more frames than the encoder gave (12.5 Hz: the
  compressor pads to a multiple of its stride); the extra frames are not scored.

Encoder and decoder stay frozen and are exported unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..codec import FocalCodec
from .config import OptimConfig, TrainConfig
from .losses import feature_loss, frame_mask
from .model import CodecStage, codes_bit_entropy, cosine
from .stage import DataSpec, Sample, StepContext

__all__ = ["QuantizerNet", "QuantizerStage"]


class QuantizerNet(nn.Module):
    """The trained path of the stage, sharing its modules with the codec."""

    def __init__(self, codec: FocalCodec) -> None:
        super().__init__()
        self.compressor = codec.compressor
        self.quantizer = codec.quantizer
        self.decompressor = codec.decompressor

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, F, D) -> (qfeats (B, F', D), lats (B, L, C))."""
        y, _ = self.compressor(feats)
        lats = F.normalize(y, dim=-1)
        codes = self.quantizer.quantize_ste(lats)
        qfeats, _ = self.decompressor(codes)
        return qfeats, lats


class QuantizerStage(CodecStage):
    """Train compressor and decompressor to reconstruct frozen encoder features."""

    name = "quantizer"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.unfreeze(self.codec.compressor, self.codec.decompressor)
        self.nets = {"model": QuantizerNet(self.codec)}

    def data_spec(self) -> DataSpec:
        return DataSpec(
            input_rate=self.input_rate,
            hop=self.hop,
            cache_key=self.encoder_key(self.codec.encoder),
            needs_audio=False,
        )

    def optim_groups(self) -> dict[str, tuple[list[nn.Parameter], OptimConfig]]:
        params = [p for p in self.nets["model"].parameters() if p.requires_grad]
        return {"model": (params, self.cfg.optim)}

    def _losses(
        self,
        qfeats: torch.Tensor,
        lats: torch.Tensor,
        feats: torch.Tensor,
        frames: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, feature, entropy) losses, in float32 and length-masked."""
        loss_cfg = self.cfg.loss
        n = min(qfeats.shape[1], feats.shape[1])
        mask = frame_mask(frames, n)
        rec = feature_loss(
            qfeats[:, :n], feats[:, :n], mask, reduction=loss_cfg.feature_reduction
        )
        lat_mask = frame_mask(self.latent_frames(frames, lats.shape[1]), lats.shape[1])
        ent = self.codec.quantizer.entropy_loss(
            lats.float(),
            mask=lat_mask,
            temperature=loss_cfg.entropy_temperature,
            diversity_weight=loss_cfg.diversity_weight,
        )
        total = loss_cfg.feature_weight * rec + loss_cfg.entropy_weight * ent
        return total, rec, ent

    def train_step(
        self, batch: dict[str, torch.Tensor], ctx: StepContext
    ) -> dict[str, float]:
        feats, frames = self.frozen_feats(batch, ctx.autocast())
        with ctx.autocast():
            qfeats, lats = self.runners["model"](feats)
        total, rec, ent = self._losses(qfeats, lats, feats, frames)
        stats = ctx.optimize("model", total)
        return {
            "loss": float(total.detach()),
            "feature_loss": float(rec.detach()),
            "entropy_loss": float(ent.detach()),
            **stats,
        }

    def valid_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        feats, frames = self.frozen_feats(batch)
        qfeats, lats = self.nets["model"](feats)
        total, rec, ent = self._losses(qfeats, lats, feats, frames)
        n = min(qfeats.shape[1], feats.shape[1])
        mse = feature_loss(qfeats[:, :n], feats[:, :n], frame_mask(frames, n), "mean")
        return {
            "loss": float(total.detach()),
            "feature_loss": float(rec.detach()),
            "entropy_loss": float(ent.detach()),
            "feature_mse": float(mse),
            "feature_cosine": cosine(qfeats[:, :n], feats[:, :n]),
            "bit_entropy": codes_bit_entropy(lats),
        }

    def samples(self, batch: dict[str, torch.Tensor], index: int) -> list[Sample]:
        feats, _ = self.frozen_feats(batch)
        qfeats, _ = self.nets["model"](feats)
        sig, _ = self.codec.decoder(qfeats)
        return [
            Sample(
                name=f"valid{index}",
                reference=batch["sig"][0],
                reference_rate=self.input_rate,
                output=sig[0],
                output_rate=self.codec.sample_rate_output,
            )
        ]
