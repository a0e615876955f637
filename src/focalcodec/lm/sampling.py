"""Sampling from a token LM: continue a spoken prompt, or generate from nothing.

    from focalcodec import FocalCodec
    from focalcodec.lm import load_lm
    from focalcodec.lm.sampling import continue_audio

    codec, lm = FocalCodec.from_pretrained(...).eval(), load_lm("runs/lm/export")
    out, rate = continue_audio(codec, lm, sig, 16000, seconds=3.0, top_p=0.9)

Sampling runs the float model with a key/value cache (one token per step, a sliding
window of ``context`` tokens); the separator is never sampled, so the result is one
continuous stream of codec tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError, ModelMismatchError
from ..identity import hash_bytes, header_for
from ..pipeline.compress import encode_tokens
from .model import KVCache, TokenLM

__all__ = [
    "SamplingConfig",
    "check_pair",
    "continue_audio",
    "filter_logits",
    "generate_audio",
    "sample_tokens",
]


class SamplingConfig(NamedTuple):
    """How to draw each token.

    Attributes
    ----------
    temperature
        Logits are divided by it; 0 picks the most likely token.
    top_k
        Keep only the k most likely tokens (0: all).
    top_p
        Keep the smallest set of tokens whose probability reaches p (1: all).
    seed
        Seed of the random generator (the same seed gives the same tokens on a
        machine).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


DEFAULT = SamplingConfig()


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Temperature, top-k and top-p applied to logits (V,); removed entries are -inf."""
    if cfg.temperature < 0 or cfg.top_k < 0 or not 0 < cfg.top_p <= 1:
        raise InputError(
            "sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1 "
            f"(got {cfg.temperature}, {cfg.top_k}, {cfg.top_p})"
        )
    logits = logits / max(cfg.temperature, 1e-8)
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1:
        order = torch.argsort(logits, descending=True)
        probs = torch.softmax(logits[order], dim=-1)
        # Keep a token when the mass before it is below top_p (the first always).
        drop = (torch.cumsum(probs, dim=-1) - probs) >= cfg.top_p
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    return logits


@torch.inference_mode()
def sample_tokens(
    lm: TokenLM, prompt: np.ndarray, count: int, cfg: SamplingConfig = DEFAULT
) -> np.ndarray:
    """Draw ``count`` tokens that follow ``prompt``.

    Parameters
    ----------
    lm
        The token LM (eval mode).
    prompt
        Codec tokens, shape (P,) (may be empty: unconditional generation).
    count
        Tokens to draw.
    cfg
        Sampling settings.

    Returns
    -------
        New tokens, shape (count,), int64, all in ``[0, codebook_size)``.
    """
    device = next(lm.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    sep = lm.cfg.separator
    context = np.concatenate([[sep], np.asarray(prompt, dtype=np.int64)])
    cache: KVCache | None = None
    step = lm.cfg.context
    logits = None
    # The prompt goes in windows of `context` tokens, each seeing the cache before it.
    for start in range(0, len(context), step):
        chunk = torch.from_numpy(context[start : start + step])[None].to(device)
        logits, cache = lm(chunk, cache)
    out = np.zeros(count, dtype=np.int64)
    for i in range(count):
        last = logits[0, -1].float().cpu()
        last[sep] = float("-inf")
        last = filter_logits(last, cfg)
        if cfg.temperature == 0:
            tok = int(torch.argmax(last))
        else:
            tok = int(torch.multinomial(torch.softmax(last, -1), 1, generator=gen))
        out[i] = tok
        logits, cache = lm(torch.tensor([[tok]], device=device), cache)
    return out


def check_pair(codec, lm: TokenLM) -> None:
    """Refuse an LM trained on another codec's tokens (or another codebook)."""
    header = header_for(codec)
    if 2**header.bits_per_token != lm.cfg.codebook_size:
        raise ModelMismatchError(
            f"the token LM models {lm.cfg.codebook_size} tokens, the codec makes "
            f"{2**header.bits_per_token}"
        )
    if lm.cfg.codec_hash and hash_bytes(lm.cfg.codec_hash) != header.model_hash:
        raise ModelMismatchError(
            f"the token LM was trained on tokens of codec {lm.cfg.codec_hash[:16]}, "
            f"not of this codec ({header.model_hash.hex()})"
        )


def _decode(codec, toks: np.ndarray, out_len: int) -> torch.Tensor:
    device = codec.device
    with torch.inference_mode():
        sig = codec.toks_to_sig(
            torch.from_numpy(toks)[None].to(device), output_length=out_len
        )
    return sig[0].to("cpu", torch.float32)


def continue_audio(
    codec,
    lm: TokenLM,
    sig: np.ndarray | torch.Tensor,
    sample_rate: int,
    seconds: float,
    cfg: SamplingConfig = DEFAULT,
) -> tuple[torch.Tensor, int]:
    """Encode a prompt, sample ``seconds`` more of tokens, decode both.

    Returns
    -------
        Waveform at ``codec.sample_rate_output`` of exactly the prompt's length plus
        ``round(seconds * sample_rate_output)`` samples (the prompt's reconstruction,
        then the continuation), and that rate.
    """
    check_pair(codec, lm)
    if seconds <= 0:
        raise InputError(f"seconds must be positive, got {seconds}")
    prompt, num_samples = encode_tokens(sig, sample_rate, codec, name="prompt")
    rate_out = int(codec.sample_rate_output)
    prompt_len = int(num_samples * rate_out / codec.sample_rate_input)
    # The prompt's tokens cover at least prompt_len samples (the last one may cover
    # padding), so ceil(seconds * rate) more tokens cover the requested length.
    new = sample_tokens(lm, prompt, int(np.ceil(seconds * codec.token_rate)), cfg)
    total = prompt_len + int(round(seconds * rate_out))
    return _decode(codec, np.concatenate([prompt, new]), total), rate_out


def generate_audio(
    codec, lm: TokenLM, seconds: float, cfg: SamplingConfig = DEFAULT
) -> tuple[torch.Tensor, int]:
    """Sample ``seconds`` of tokens from nothing and decode them.

    Returns
    -------
        Waveform of exactly ``round(seconds * sample_rate_output)`` samples, and the
        rate.
    """
    check_pair(codec, lm)
    if seconds <= 0:
        raise InputError(f"seconds must be positive, got {seconds}")
    count = int(np.ceil(seconds * codec.token_rate))
    toks = sample_tokens(lm, np.zeros(0, np.int64), count, cfg)
    rate_out = int(codec.sample_rate_output)
    return _decode(codec, toks, int(round(seconds * rate_out))), rate_out
