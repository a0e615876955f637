"""The probe networks: an input layer, a BiLSTM and a task head.

Token input follows the FocalCodec papers (after DASB): an embedding table of
``codebook_size x bits`` rows initialised with the codec's binary codes
(+-1/sqrt(bits)) and trained with the probe. Feature input feeds continuous frames
(the decompressed features, ``toks_to_qfeats``) straight into the BiLSTM.

Heads: CTC (a linear layer over units + blank, ASR) or mean/std pooling over the valid
frames, normalised (a LayerNorm without weights), then a linear layer (classification).

Why the normalisation (our addition to the papers' recipe): the pooled BiLSTM outputs
are small (tanh outputs averaged; the standard deviation of a steady sound is near 0),
so at the protocol's learning rate of 1e-4 the linear head moved too slowly to learn
even four pure tones from a small data set, far below a linear classifier on token
histograms (measured in ``docs/probes.md``, "Probes against a bag-of-tokens
baseline"). It has no weights, so checkpoints keep their keys; ``net.norm: false``
restores the papers' head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["ProbeNet", "masked_mean_std"]


def masked_mean_std(x: Tensor, lengths: Tensor) -> Tensor:
    """Mean and standard deviation over the valid frames.

    Parameters
    ----------
    x
        Frames (B, T, D).
    lengths
        Valid frames per item (B,), at least 1.

    Returns
    -------
        (B, 2 * D): mean then standard deviation.
    """
    steps = torch.arange(x.shape[1], device=x.device)
    mask = (steps[None, :] < lengths[:, None]).unsqueeze(-1).to(x.dtype)
    count = lengths.clamp(min=1).to(x.dtype)[:, None]
    mean = (x * mask).sum(1) / count
    var = (((x - mean[:, None]) ** 2) * mask).sum(1) / count
    # The floor keeps the gradient of sqrt finite on constant inputs.
    return torch.cat([mean, var.clamp(min=1e-8).sqrt()], dim=-1)


class ProbeNet(nn.Module):
    """Input layer + BiLSTM + head.

    Parameters
    ----------
    num_outputs
        Classes (classification) or units + 1 (CTC, blank at index 0).
    pooled
        True for classification (mean/std pooling), False for frame outputs (CTC).
    codebook
        Token input: the codes (codebook_size, bits) that initialise the embedding.
    feature_dim
        Feature input: the frame size. Exactly one of ``codebook`` / ``feature_dim``.
    hidden
        LSTM units per direction.
    layers
        LSTM layers.
    dropout
        Dropout on the LSTM input, between LSTM layers and before the head.
    norm
        Normalise the pooled features before the head (classification only).
    """

    def __init__(
        self,
        num_outputs: int,
        pooled: bool,
        codebook: Tensor | None = None,
        feature_dim: int | None = None,
        hidden: int = 512,
        layers: int = 2,
        dropout: float = 0.1,
        norm: bool = True,
    ) -> None:
        super().__init__()
        if (codebook is None) == (feature_dim is None):
            raise ValueError("give exactly one of codebook and feature_dim")
        self.embedding = None
        if codebook is not None:
            self.embedding = nn.Embedding(codebook.shape[0], codebook.shape[1])
            with torch.no_grad():
                self.embedding.weight.copy_(codebook)
            in_dim = codebook.shape[1]
        else:
            in_dim = int(feature_dim)
        self.pooled = pooled
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            in_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        width = 4 * hidden if pooled else 2 * hidden
        use_norm = pooled and norm
        self.norm = nn.LayerNorm(width, elementwise_affine=False) if use_norm else None
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Tokens (B, T) int64 or features (B, T, D), valid frames (B,).

        Returns
        -------
            Logits (B, num_outputs) when pooled, else (B, T, num_outputs).
        """
        if self.embedding is not None:
            x = self.embedding(x)
        x = self.dropout(x)
        total = x.shape[1]
        packed = pack_padded_sequence(
            x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        out = self.dropout(out)
        if self.pooled:
            out = masked_mean_std(out, lengths)
            if self.norm is not None:
                out = self.norm(out)
        return self.head(out)
