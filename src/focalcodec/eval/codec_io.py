"""Loading a codec and running it file by file with timings.

Encode and decode are timed separately, after a warm-up call, with CUDA synchronised
where used, so the real-time factors measure the model and not one-off set-up costs. The
real-time factor is compute time divided by audio duration (below 1 is faster than real
time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..files.audio import resample
from ..pipeline import models
from ..pipeline.banks import feats_long
from ..pipeline.longaudio import fits_whole
from ..streaming.longform import decode_long, encode_long
from .base import EVAL_RATE

__all__ = ["CodecOutput", "TimedCodec", "fit_length", "load_codec"]


def load_codec(source: Any, device: str = "cpu") -> Any:
    """A codec ready for evaluation on ``device``: a codec object, or anything
    :func:`focalcodec.pipeline.models.load_codec` loads (local directory, JSON file,
    packaged name, Hub id)."""
    return models.load_codec(source, device)


@dataclass
class CodecOutput:
    """What one file became.

    Attributes
    ----------
    toks
        Token ids, shape (L,), int64.
    sig
        Decoded waveform resampled to :data:`EVAL_RATE`, shape (N',).
    enc_seconds, dec_seconds
        Wall-clock time of encoding and decoding.
    """

    toks: np.ndarray
    sig: np.ndarray
    enc_seconds: float
    dec_seconds: float


class TimedCodec:
    """Runs one codec on single utterances and times it.

    Parameters
    ----------
    codec
        A FocalCodec (or anything with the same conversion methods and properties).
    device
        Device the codec lives on.
    """

    def __init__(self, codec: Any, device: str = "cpu") -> None:
        self.codec = codec
        self.device = torch.device(device)
        self.sr_in = int(codec.sample_rate_input)
        self.sr_out = int(codec.sample_rate_output)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warm_up(self) -> None:
        """Run one second of low noise through the codec so lazy set-up is not timed."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, self.sr_in)
        self.run(noise.astype(np.float32))

    @torch.inference_mode()
    def features(self, sig: np.ndarray) -> torch.Tensor:
        """Encoder features of one utterance at the codec input rate, shape (F, D).

        Utterances longer than :data:`~focalcodec.pipeline.longaudio.WHOLE_SECONDS` go
        through windows, so the model's memory does not grow with their length.
        """
        if not fits_whole(self.codec, len(sig)):
            return feats_long(self.codec, np.ascontiguousarray(sig)[None])
        x = torch.from_numpy(np.ascontiguousarray(sig))[None].to(self.device)
        return self.codec.sig_to_feats(x)[0]

    @torch.inference_mode()
    def run(
        self, sig: np.ndarray, matching_set: torch.Tensor | None = None, topk: int = 4
    ) -> CodecOutput:
        """Encode and decode one utterance.

        Parameters
        ----------
        sig
            Waveform at the codec input rate, shape (N,), float32.
        matching_set
            Target-speaker features (M, D) for kNN voice conversion, or ``None``.
        topk
            Neighbours averaged per frame in voice conversion.

        Returns
        -------
            Tokens, the output at :data:`EVAL_RATE` and the two timings.
        """
        x = torch.from_numpy(np.ascontiguousarray(sig))[None].to(self.device)
        out_len = int(x.shape[-1] * self.sr_out / self.sr_in)
        # Long utterances: a causal model's stream or non-causal windows, so that the
        # model's memory stays bounded (focalcodec.streaming.longform).
        long = not fits_whole(self.codec, x.shape[-1])
        self._sync()
        start = time.perf_counter()
        toks = encode_long(self.codec, x) if long else self.codec.sig_to_toks(x)
        self._sync()
        mid = time.perf_counter()
        kwargs = (
            {} if matching_set is None else {"matching_set": matching_set, "topk": topk}
        )
        if long:
            out = decode_long(self.codec, toks, output_length=out_len, **kwargs)
        else:
            out = self.codec.toks_to_sig(toks, output_length=out_len, **kwargs)
        self._sync()
        end = time.perf_counter()
        wav = out[0].float().cpu().numpy()
        return CodecOutput(
            toks=toks[0].cpu().numpy().astype(np.int64),
            sig=resample(wav, self.sr_out, EVAL_RATE),
            enc_seconds=mid - start,
            dec_seconds=end - mid,
        )


def fit_length(sig: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad ``sig`` (N,) to ``length`` samples so it aligns with the original."""
    if sig.size >= length:
        return sig[:length]
    return np.pad(sig, (0, length - sig.size))
