"""Stateful, chunk-by-chunk processing for causal models.

:class:`StreamState` holds the state of the four stateful components. The two step
functions advance it by one call; feeding ``chunk_size`` samples (and the tokens they
produce) per call reproduces offline processing exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import StreamingError
from ..modules.knn import knn
from ..modules.wavlm import WavLMState

__all__ = ["StreamState", "decode_step", "encode_step"]


@dataclass
class StreamState:
    """Per-component streaming state; ``None`` fields mean "start of stream".

    Attributes
    ----------
    encoder
        WavLM convolution contexts, attention position and key/value caches.
    compressor
        Per layer: the DownScale context, then one context per focal conv.
    decompressor
        Per layer: one context per focal conv, then the UpScale context.
    decoder
        The embedding conv context, then one context per ConvNeXt block.
    """

    encoder: WavLMState | None = None
    compressor: list | None = None
    decompressor: list | None = None
    decoder: list | None = None

    def flatten(self) -> dict[str, Tensor]:
        """All state tensors by dotted name, in the original package's numbering.

        Component 0 = encoder, 1 = compressor, 2 = decompressor, 3 = decoder, e.g.
        ``"0.1.3"`` is the context of the encoder's fourth CNN layer.
        """
        out: dict[str, Tensor] = {}
        parts = [
            list(self.encoder) if self.encoder else None,
            [self.compressor] if self.compressor else None,
            [self.decompressor] if self.decompressor else None,
            [self.decoder] if self.decoder else None,
        ]
        for index, part in enumerate(parts):
            _flatten_into(out, str(index), part)
        return out


def _flatten_into(out: dict, prefix: str, node) -> None:
    if node is None:
        return
    if torch.is_tensor(node):
        out[prefix] = node
        return
    for i, child in enumerate(node):
        _flatten_into(out, f"{prefix}.{i}", child)


def _check_causal(codec) -> None:
    if not codec.causal:
        raise StreamingError(
            f"model {codec.model_id or ''} is not causal: streaming needs a causal model "
            "(e.g. focalcodec_50hz_2k_causal); use the offline methods instead"
        )


def encode_step(
    codec, sig: Tensor, state: StreamState | None = None
) -> tuple[Tensor, Tensor, StreamState]:
    """Encode the next piece of a stream.

    Parameters
    ----------
    codec
        A causal :class:`~focalcodec.FocalCodec`.
    sig
        Next samples, shape (B, n); a multiple of ``codec.chunk_size`` keeps exact parity
        with offline encoding.
    state
        The state returned by the previous call, or None to start.

    Returns
    -------
    Tokens (B, l), codes (B, l, C) and the updated state.
    """
    _check_causal(codec)
    state = state or StreamState()
    feats, enc = codec.encoder(sig, state.encoder)
    lats, comp = codec.compressor(feats, state.compressor)
    codes = codec.quantizer.lats_to_codes(F.normalize(lats, dim=-1))
    toks = codec.quantizer.codes_to_toks(codes)
    new = StreamState(enc, comp, state.decompressor, state.decoder)
    return toks, codes, new


def decode_step(
    codec, codes: Tensor, state: StreamState | None = None, matching_set=None, topk=4
) -> tuple[Tensor, StreamState]:
    """Decode the next codes (B, l, C) of a stream into samples (B, l * up * hop).

    ``matching_set`` (M, D) turns on kNN voice conversion, frame by frame.
    """
    _check_causal(codec)
    state = state or StreamState()
    qfeats, dec = codec.decompressor(codes, state.decompressor)
    if matching_set is not None:
        # modules.knn checks shapes and topk but not finiteness, a pass over the whole
        # set that a session does once (StreamDecoder), not at every 80 ms step.
        qfeats = knn(qfeats, matching_set.to(qfeats), topk).mean(dim=-2)
    sig, voc = codec.decoder(qfeats, state.decoder)
    new = StreamState(state.encoder, state.compressor, dec, voc)
    return sig, new
