"""A deterministic stand-in codec for fast tests of the evaluation runner."""

from __future__ import annotations

import numpy as np
import torch


class FakeCodec:
    """Tokens are the quantised RMS of 20 ms frames; decoding makes a tone at that level.

    It has the FocalCodec conversion methods and properties the runner uses, counts its
    calls, and outputs 24 kHz (so the runner's resampling to 16 kHz is exercised).
    """

    sample_rate_input = 16000
    sample_rate_output = 24000
    codebook_size = 16
    bits_per_token = 4
    token_rate = 50.0
    hop = 320
    model_id = "fake"
    causal = False
    latency = None

    def __init__(self) -> None:
        self.encoded = 0
        self.matching_sets: list[torch.Tensor | None] = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def config_hash(self) -> str:
        return "fa4e"

    def sig_to_toks(self, sig: torch.Tensor) -> torch.Tensor:
        self.encoded += 1
        frames = -(-sig.shape[-1] // self.hop)
        padded = torch.nn.functional.pad(sig, (0, frames * self.hop - sig.shape[-1]))
        rms = padded.reshape(sig.shape[0], frames, self.hop).square().mean(-1).sqrt()
        return torch.clamp((rms * 60).long(), 0, self.codebook_size - 1)

    def sig_to_feats(self, sig: torch.Tensor) -> torch.Tensor:
        frames = sig.shape[-1] // self.hop
        return torch.ones(sig.shape[0], frames, 8)

    def toks_to_sig(self, toks, output_length=None, matching_set=None, topk=4):
        self.matching_sets.append(matching_set)
        hop = self.hop * self.sample_rate_output // self.sample_rate_input
        level = toks.float().repeat_interleave(hop, dim=-1) / 60
        t = torch.arange(level.shape[-1]) / self.sample_rate_output
        sig = level * np.sqrt(2) * torch.sin(2 * torch.pi * 200 * t)
        if output_length is not None:
            sig = sig[..., :output_length]
        return sig
