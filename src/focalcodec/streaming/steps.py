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
from ..inputs import check_finite
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
    # As offline: latents that overflowed (a sample at 1e30) are an error, not token 0.
    lats = check_finite(lats, "latents")
    codes = codec.quantizer.lats_to_codes(F.normalize(lats, dim=-1))
    toks = codec.quantizer.codes_to_toks(codes)
    new = StreamState(enc, comp, state.decompressor, state.decoder)
    return toks, codes, new


def decode_step(
    codec, codes: Tensor, state: StreamState | None = None, matching_set=None, topk=4
) -> tuple[Tensor, StreamState]:
    """Decode the next codes (B, l, C) of a stream into samples (B, l * up * hop).

    ``matching_set`` (M, D) turns on kNN voice conversion, frame by frame. For many
    streams stepped together it may be a list with one set (or None) per row, and
    ``topk`` an int or a list with one per row: each row is converted with its own.
    """
    _check_causal(codec)
    state = state or StreamState()
    qfeats, dec = codec.decompressor(codes, state.decompressor)
    if matching_set is not None:
        qfeats = _convert(qfeats, matching_set, topk)
    sig, voc = codec.decoder(qfeats, state.decoder)
    new = StreamState(state.encoder, state.compressor, dec, voc)
    return sig, new


def _convert(qfeats: Tensor, matching_set, topk) -> Tensor:
    """kNN voice conversion of decoded features (B, l, D), one set or one per row."""
    # modules.knn checks shapes and topk but not finiteness, a pass over the whole
    # set that a session does once (StreamDecoder), not at every 80 ms step.
    if torch.is_tensor(matching_set):
        return knn(qfeats, matching_set.to(qfeats), topk).mean(dim=-2)
    if len(matching_set) != qfeats.shape[0]:
        raise StreamingError(
            f"{len(matching_set)} matching sets for {qfeats.shape[0]} rows: give one "
            "set (or None) per row"
        )
    topks = list(topk) if isinstance(topk, (list, tuple)) else [topk] * len(qfeats)
    groups: dict[tuple[int, int], tuple[Tensor, list[int]]] = {}
    for row, (bank, k) in enumerate(zip(matching_set, topks)):
        if bank is not None:
            groups.setdefault((id(bank), k), (bank, []))[1].append(row)
    if not groups:
        return qfeats
    out = qfeats.clone()
    for (_, k), (bank, rows) in groups.items():
        index = torch.tensor(rows, device=qfeats.device)
        out[index] = knn(qfeats[index], bank.to(qfeats), k).mean(dim=-2)
    return out
