"""Stage "decoder": Vocos or WaveNeXt trained to synthesise speech from frozen features.

The decoder learns from the continuous encoder features (not from quantized ones), so
this stage is independent of the quantizer stage and both can run at the same time.
Each step, for a crop of ``data.crop_samples`` input samples (7040 in the paper):

1. discriminator step: hinge loss on real audio and on the detached generator output;
2. generator step: ``mel_weight * L1(log-mel) + adversarial_weight * hinge
   + feature_matching_weight * L1(discriminator activations)``.

With ``discriminator.warmup_steps = k`` the first k steps train the generator with the
mel loss alone and leave the discriminators untouched.

The target is the same crop at the decoder's output rate (24 kHz for WaveNeXt), cut
from the file resampled once with soxr, so input and target stay sample-aligned.
"""

from __future__ import annotations

import torch
from torch import nn

from ..codec import FocalCodec
from .config import OptimConfig, TrainConfig
from .discriminators import Discriminators
from .losses import (
    MelSpectrogram,
    discriminator_hinge_loss,
    feature_matching_loss,
    frame_mask,
    generator_hinge_loss,
    mel_loss,
)
from .model import CodecStage
from .stage import DataSpec, Sample, StepContext

__all__ = ["DecoderNet", "DecoderStage"]


class DecoderNet(nn.Module):
    """The codec's decoder as a plain features -> waveform module."""

    def __init__(self, codec: FocalCodec) -> None:
        super().__init__()
        self.decoder = codec.decoder

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (B, F, D) -> waveform (B, F * hop_out)."""
        sig, _ = self.decoder(feats)
        return sig


class DecoderStage(CodecStage):
    """Train the codec's decoder adversarially on frozen encoder features."""

    name = "decoder"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.unfreeze(self.codec.decoder)
        dcfg = cfg.discriminator
        disc = Discriminators(
            dcfg.periods,
            dcfg.period_channels,
            dcfg.resolutions,
            dcfg.resolution_channels,
        ).to(device)
        self.nets = {"generator": DecoderNet(self.codec), "discriminator": disc}
        mel = cfg.loss.mel
        self.output_rate = self.codec.sample_rate_output
        self.melspec = MelSpectrogram(
            self.output_rate,
            mel.n_fft,
            mel.hop_length,
            mel.n_mels,
            mel.f_min,
            mel.f_max,
        ).to(device)

    def data_spec(self) -> DataSpec:
        return DataSpec(
            input_rate=self.input_rate,
            hop=self.hop,
            target_rate=self.output_rate,
            cache_key=self.encoder_key(self.codec.encoder),
        )

    def optim_groups(self) -> dict[str, tuple[list[nn.Parameter], OptimConfig]]:
        return {
            "generator": (list(self.nets["generator"].parameters()), self.cfg.optim),
            "discriminator": (
                list(self.nets["discriminator"].parameters()),
                self.cfg.disc_optim,
            ),
        }

    def _generate(
        self, batch: dict[str, torch.Tensor], ctx: StepContext | None, net: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fake, real) waveforms of equal length, silent past each item's end."""
        feats, _ = self.frozen_feats(batch, ctx.autocast() if ctx else None)
        if ctx is not None:
            with ctx.autocast():
                fake = net(feats)
        else:
            fake = net(feats)
        real = batch["target"]
        n = min(fake.shape[1], real.shape[1])
        fake, real = fake[:, :n].float(), real[:, :n]
        keep = frame_mask(batch["target_len"].clamp(max=n), n)
        return fake * keep, real * keep

    def train_step(
        self, batch: dict[str, torch.Tensor], ctx: StepContext
    ) -> dict[str, float]:
        lcfg = self.cfg.loss
        fake, real = self._generate(batch, ctx, self.runners["generator"])
        adversarial = ctx.step >= self.cfg.discriminator.warmup_steps
        out: dict[str, float] = {}
        if adversarial:
            out.update(self._discriminator_step(fake, real, ctx))
        mel = mel_loss(fake, real, self.melspec)
        total = lcfg.mel_weight * mel
        if adversarial:
            # The raw (unwrapped) discriminator: its gradients are not wanted here, and
            # frozen parameters keep DDP's gradient hooks from firing.
            disc = self.nets["discriminator"]
            disc.requires_grad_(False)
            try:
                with ctx.autocast():
                    logits, acts = disc(torch.cat([real, fake]))
                batch_size = real.shape[0]
                adv = generator_hinge_loss([x[batch_size:] for x in logits])
                fm = feature_matching_loss(
                    [[a[:batch_size] for a in sub] for sub in acts],
                    [[a[batch_size:] for a in sub] for sub in acts],
                )
            finally:
                disc.requires_grad_(True)
            total = (
                total
                + lcfg.adversarial_weight * adv
                + lcfg.feature_matching_weight * fm
            )
            out.update(
                adversarial_loss=float(adv.detach()),
                feature_matching_loss=float(fm.detach()),
            )
        out.update(ctx.optimize("generator", total))
        out.update(loss=float(total.detach()), mel_loss=float(mel.detach()))
        return out

    def _discriminator_step(
        self, fake: torch.Tensor, real: torch.Tensor, ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            logits, _ = self.runners["discriminator"](torch.cat([real, fake.detach()]))
        batch_size = real.shape[0]
        loss = discriminator_hinge_loss(
            [x[:batch_size] for x in logits], [x[batch_size:] for x in logits]
        )
        stats = ctx.optimize("discriminator", loss)
        return {"disc_loss": float(loss.detach()), **stats}

    def valid_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fake, real = self._generate(batch, None, self.nets["generator"])
        return {"mel_loss": float(mel_loss(fake, real, self.melspec))}

    def samples(self, batch: dict[str, torch.Tensor], index: int) -> list[Sample]:
        fake, real = self._generate(batch, None, self.nets["generator"])
        return [
            Sample(
                name=f"valid{index}",
                reference=real[0],
                reference_rate=self.output_rate,
                output=fake[0],
                output_rate=self.output_rate,
            )
        ]
