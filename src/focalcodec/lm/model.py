"""A small decoder-only transformer over codec tokens.

The architecture is chosen so that it can also be evaluated in exact, machine-independent
arithmetic for entropy coding (:mod:`focalcodec.lm.exact`):

* parameter-free RMSNorm before every branch and before the head;
* ALiBi position biases (a fixed slope per head times the distance), so attention depends
  on relative positions only: a sliding window of ``context`` tokens needs no position
  table and no trigonometry, and a key/value cache never has to be re-rotated;
* a squared-ReLU MLP (no ``exp`` or ``tanh`` inside the network);
* no biases, so every linear layer is one matrix product.

The vocabulary is the codec's codebook plus one separator token (id ``codebook_size``)
that marks utterance boundaries in packed training blocks and starts every stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["KVCache", "LMConfig", "TokenLM", "alibi_slopes", "rms_norm"]

NORM_EPS = 1e-6


@dataclass
class LMConfig:
    """Architecture of a :class:`TokenLM` and the tokens it models.

    Attributes
    ----------
    codebook_size
        Number of codec tokens; the vocabulary adds one separator token.
    dim
        Width of the residual stream.
    num_layers
        Transformer blocks.
    num_heads
        Attention heads; ``dim`` must be a multiple of it.
    mlp_ratio
        Hidden width of the MLP over ``dim``.
    context
        Tokens each attention layer looks at (the position itself included): the
        training block length, and the sliding window of generation and entropy coding
        (stacked layers reach further back through the cached keys and values).
    dropout
        Dropout on the residual branches during training.
    codec_hash
        Config hash of the codec whose tokens this LM models ("" when unknown).
    token_rate
        Tokens per second of that codec (0 when unknown), for bits per second.
    """

    codebook_size: int
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    context: int = 256
    dropout: float = 0.0
    codec_hash: str = ""
    token_rate: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "codebook_size": self.codebook_size >= 2,
            "dim": self.dim > 0 and self.dim % max(self.num_heads, 1) == 0,
            "num_layers": self.num_layers > 0,
            "num_heads": self.num_heads > 0,
            "mlp_ratio": self.mlp_ratio > 0,
            "context": self.context >= 2,
            "dropout": 0.0 <= self.dropout < 1.0,
            "token_rate": self.token_rate >= 0.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"LM config '{key}' is invalid ({getattr(self, key)!r}); dim must "
                    "be a multiple of num_heads, context at least 2"
                )

    @property
    def vocab_size(self) -> int:
        """Codebook plus the separator."""
        return self.codebook_size + 1

    @property
    def separator(self) -> int:
        """Id of the separator token."""
        return self.codebook_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown LM config keys: {', '.join(unknown)}")
        if "codebook_size" not in data:
            raise ConfigError("LM config needs 'codebook_size'")
        return cls(**data)


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi slope of each head: ``2 ** (-8 (h + 1) / num_heads)``.

    Powers of two whenever ``num_heads`` divides 8, which keeps the exact coder's biases
    exact too (any float64 value works there, though).
    """
    return [2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)]


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm over the last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)


class KVCache(NamedTuple):
    """Keys and values of the last ``context - 1`` tokens, per layer.

    Attributes
    ----------
    keys, values
        One tensor per layer, shape (B, H, S, head_dim).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]


class Attention(nn.Module):
    """Causal multi-head self-attention with ALiBi over a sliding window."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.dim // cfg.num_heads
        self.context = cfg.context
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.register_buffer(
            "slopes", torch.tensor(alibi_slopes(cfg.num_heads)), persistent=False
        )

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend over the past keys and the new tokens.

        Parameters
        ----------
        x
            New tokens' states, shape (B, T, D).
        past
            Keys and values of earlier tokens, each (B, H, S, head_dim), or None.

        Returns
        -------
            Output (B, T, D) and the keys/values of past + new tokens.
        """
        b, t, _ = x.shape
        q, k, v = (
            self.qkv(x)
            .view(b, t, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        bias = self._bias(t, k.shape[2], x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, t, -1)
        return self.proj(out), (k, v)

    def _bias(self, t: int, s: int, device: torch.device) -> torch.Tensor:
        # Query i (absolute position s - t + i) sees keys j with 0 <= dist < context.
        pos_q = torch.arange(s - t, s, device=device)[:, None]
        dist = (pos_q - torch.arange(s, device=device)[None, :]).float()
        allowed = (dist >= 0) & (dist < self.context)
        bias = -self.slopes.to(device)[:, None, None] * dist
        return bias.masked_fill(~allowed, float("-inf"))


class Block(nn.Module):
    """Pre-norm transformer block: attention, then a squared-ReLU MLP."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.fc = nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past=None):
        """(B, T, D) -> (B, T, D), plus this layer's keys/values."""
        h, kv = self.attn(rms_norm(x), past)
        x = x + self.drop(h)
        h = self.out(F.relu(self.fc(rms_norm(x))).square())
        return x + self.drop(h), kv


class TokenLM(nn.Module):
    """Decoder-only transformer over codec tokens plus a separator.

    Parameters
    ----------
    cfg
        Architecture; see :class:`LMConfig`.
    """

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Identity of the weights this model was loaded from (see lm.files.lm_hash).
        self.lm_hash = ""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual projections scaled by depth."""
        for name, p in self.named_parameters():
            std = 0.02
            if name.endswith(("attn.proj.weight", "out.weight")):
                std /= math.sqrt(2 * self.cfg.num_layers)
            nn.init.normal_(p, std=std)

    def forward(
        self, toks: torch.Tensor, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """Next-token logits.

        Parameters
        ----------
        toks
            Token ids, shape (B, T), in ``[0, vocab_size)``.
        cache
            Keys/values of the preceding tokens (from an earlier call), or None.

        Returns
        -------
            Logits, shape (B, T, vocab_size) (row t predicts token t + 1), and the cache
            of the last ``context - 1`` tokens for the next call.
        """
        x = self.embed(toks)
        keys, values = [], []
        keep = self.cfg.context - 1
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(x, past)
            keys.append(k[:, :, -keep:])
            values.append(v[:, :, -keep:])
        return self.head(rms_norm(x)), KVCache(keys, values)
