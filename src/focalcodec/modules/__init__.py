"""Network blocks of the pipeline, one file per role.

``wavlm`` (encoder), ``focalnet`` (compressor and decompressor), ``bsq`` (quantizer),
``vocos`` / ``wavenext`` (decoders, on ``convnext``), with the shared pieces in
``layers`` and ``attention``, ``knn`` (the nearest-neighbour matching of voice
conversion) and ``spectral`` (the STFT and mel filterbank of the training losses,
evaluation and figures).

:class:`NetworkFacts` is what a codec reads of its four networks when it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["NetworkFacts"]


class NetworkFacts(NamedTuple):
    """The facts of the four networks that :class:`~focalcodec.FocalCodec` derives its
    rates and sizes from, read once when the codec is built.

    Read once so that a network may afterwards run behind a wrapper that offers only
    its call (fast modes and ``jit()``: :class:`focalcodec.deploy.swap.NetworkWrapper`);
    nothing reads these attributes of a network later.
    """

    sample_rate: int  # input samples per second
    frame_hop: int  # input samples per encoder frame (the shortest input)
    hop_length: int  # input samples per token
    output_hop_length: int  # output samples per token
    chunk_size: int  # input samples per streaming step
    causal: bool  # every network is causal: the codec can stream
    frame_lengths: Callable[[Tensor], Tensor]  # encoder frames of (B,) sample counts
    token_lengths: Callable[[Tensor], Tensor]  # tokens of (B,) encoder frame counts

    @classmethod
    def read(
        cls,
        encoder: nn.Module,
        compressor: nn.Module,
        decompressor: nn.Module,
        decoder: nn.Module,
    ) -> NetworkFacts:
        """The facts of freshly built networks (see the fields for what is read)."""
        nets = (encoder, compressor, decompressor, decoder)
        return cls(
            encoder.sample_rate,
            encoder.downsample_factor,
            encoder.downsample_factor * compressor.downsample_factor,
            decompressor.upsample_factor * decoder.upsample_factor,
            encoder.chunk_size,
            all(getattr(net, "causal", False) for net in nets),
            encoder.frame_lengths,
            compressor.out_lengths,
        )
