"""Lossless entropy coding of token packets (``.fcz`` version 2).

Two entropy models, both bit-exact on every machine, both coded with the range coder of
`constriction <https://bamler-lab.github.io/constriction/>`_:

* ``adaptive`` (:class:`AdaptiveCoder`) needs no weights. Each token is coded bit by bit,
  most significant first; bit ``k`` is predicted from integer counts of two experts
  (the bit's position alone; the position refined by the previous token's bit, by
  whether the token repeats the previous one so far and by the bits already coded),
  mixed with Bayesian weights. Only integer counts and ``+ - * /`` in a fixed order are
  involved, so encoder and decoder agree exactly on every machine.
* ``lm`` (:class:`PredictiveCoder`) codes each token with the next-token distribution of
  a trained token LM, computed by :class:`focalcodec.lm.exact.ExactLM` in arithmetic that
  gives the same bits everywhere (see that module).

A coder keeps its context across packets, so streaming files (one packet per chunk)
still use everything seen so far. The container (:mod:`focalcodec.fcz.bitstream`) stores a
packet coded only when that is smaller than packing it.

A payload must account for every token it claims. A range decoder never runs out: past
the end of its data it reads zeros and keeps producing tokens, so a few crafted bytes
could claim hours. Two checks stop that. Before any work, the count may not exceed what
the payload's bytes can carry at the model's smallest cost per token
(:meth:`AdaptiveCoder.max_tokens`; honest payloads always fit). While decoding, every
token read is coded again: the words this produces must stay within the payload (the
decoder stops at the first token that needs data beyond its end), and at the end they
must equal the payload byte for byte, so only what the encoder itself writes is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import FocalCodecError, FormatError, InputError, ModelMismatchError
from .limits import HASH_SIZE

__all__ = [
    "ENTROPY_ADAPTIVE",
    "ENTROPY_LM",
    "ENTROPY_NAMES",
    "ENTROPY_NONE",
    "AdaptiveCoder",
    "AdaptiveModel",
    "EntropyModel",
    "PacketCoder",
    "PacketStats",
    "PredictiveCoder",
    "Predictor",
    "check_coder",
    "decode_packet",
    "describe",
    "resolve_entropy",
]

ENTROPY_NONE, ENTROPY_ADAPTIVE, ENTROPY_LM = 0, 1, 2
ENTROPY_NAMES = {ENTROPY_NONE: "none", ENTROPY_ADAPTIVE: "adaptive", ENTROPY_LM: "lm"}
# Adaptive counts are halved when their sum reaches this: recent statistics weigh more.
COUNT_LIMIT = 1024
# Pseudo-counts that pull each refinement towards the coarser estimate before it.
PRIOR = (4.0, 2.0, 2.0, 1.0)
# Mass the mixture shares back between its two experts after every bit.
SHARE = 1e-3
# Tokens per LM forward pass when encoding (memory: CHUNK x codebook float64).
CHUNK = 256
# constriction's default range coder: 32-bit words, probabilities quantised to 24 bits
# with every symbol given at least one unit ("leaky"), which bounds the most likely one.
WORD_BITS, PRECISION = 32, 24
# Decoded tokens between two checks that the replayed coding stays within the payload.
REPLAY_EVERY = 64


class PacketCoder(Protocol):
    """Entropy coding of packets, with a context carried from packet to packet.

    Every call advances the context by the packet's tokens, so the writer's and the
    reader's coders stay in step whatever form each packet is stored in.
    """

    entropy: int  # ENTROPY_ADAPTIVE or ENTROPY_LM
    entropy_hash: bytes  # HASH_SIZE bytes, as in the header

    def encode(self, toks: np.ndarray) -> bytes:
        """Code tokens (L,) into bytes."""

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decode ``count`` tokens, shape (count,) int64, from what encode() made."""

    def observe(self, toks: np.ndarray) -> None:
        """Advance the context by tokens (L,) that were stored without coding."""

    def max_tokens(self, num_bytes: int) -> int:
        """The most tokens an honest payload of ``num_bytes`` bytes can hold."""


class EntropyModel(Protocol):
    """A source of fresh coders (one per stream) for one entropy model."""

    entropy: int
    entropy_hash: bytes

    def coder(self, bits: int, codec_hash: bytes) -> PacketCoder:
        """A coder in its initial state for ``bits``-bit tokens of the given codec."""


class Predictor(Protocol):
    """Next-token probabilities that every machine computes identically."""

    codebook_size: int

    def start(self) -> np.ndarray:
        """Reset to an empty stream; the distribution (C,) of the first token."""

    def feed(self, toks: np.ndarray) -> np.ndarray:
        """Append tokens (T,); row t of the result (T, C) is what follows toks[t]."""


@dataclass
class PacketStats:
    """What the packets of a stream cost.

    Attributes
    ----------
    packets
        Packets read or written.
    coded_packets
        Those stored entropy-coded.
    payload_bytes
        Bytes of token payloads (packed, or coded with their size field).
    """

    packets: int = 0
    coded_packets: int = 0
    payload_bytes: int = 0

    def add(self, payload: int, coded: bool) -> None:
        """Count one packet."""
        self.packets += 1
        self.coded_packets += int(coded)
        self.payload_bytes += payload


def describe(entropy: int, entropy_hash: bytes) -> str:
    """``none``, ``adaptive`` or ``lm <hash hex>``."""
    name = ENTROPY_NAMES.get(entropy, f"unknown ({entropy})")
    return f"{name} {entropy_hash.hex()}" if entropy == ENTROPY_LM else name


def check_coder(entropy: int, entropy_hash: bytes, coder: PacketCoder | None) -> None:
    """Raise unless ``coder`` is the entropy model a header names (None: no coding)."""
    if coder is None:
        return
    if entropy == ENTROPY_NONE:
        raise FormatError("an entropy coder was given for a file without coding")
    if coder.entropy != entropy or coder.entropy_hash != entropy_hash:
        raise ModelMismatchError(
            f"the file is entropy-coded with {describe(entropy, entropy_hash)}, but "
            f"the entropy model given is {describe(coder.entropy, coder.entropy_hash)}"
            "; use the token LM that encoded it"
        )


def decode_packet(
    coder: PacketCoder | None, data: bytes, count: int, bits: int, where: str
) -> np.ndarray:
    """Decode one coded payload and check the tokens; shape (count,) int64."""
    if coder is None:
        raise FormatError(f"{where}: the file is entropy-coded; pass its entropy model")
    if count and not data:
        raise FormatError(f"{where}: an empty coded payload cannot hold {count} tokens")
    if count > coder.max_tokens(len(data)):
        raise FormatError(
            f"{where}: {len(data)} coded bytes cannot hold {count} tokens (at most "
            f"{coder.max_tokens(len(data))}); the file is corrupted or forged"
        )
    try:
        toks = coder.decode(data, count)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    if len(toks) != count or (count and (toks.min() < 0 or int(toks.max()) >> bits)):
        raise FormatError(f"{where}: the entropy-coded payload does not decode")
    return toks


def resolve_entropy(spec: str | EntropyModel | None) -> EntropyModel | None:
    """The entropy model for ``none`` / ``adaptive`` / a model object (LMs included).

    A token LM is loaded by :class:`focalcodec.lm.LMEntropyModel` (``lm:DIR`` on the
    command line) and passed here as an object.
    """
    if spec is None or spec == "none":
        return None
    if spec == "adaptive":
        return AdaptiveModel()
    if isinstance(spec, str):
        raise InputError(
            f"entropy model {spec!r}: use 'none', 'adaptive', or pass "
            "focalcodec.lm.LMEntropyModel(DIR) for a token LM"
        )
    return spec


# ---------------------------------------------------------------------------------------
# Range coder glue
# ---------------------------------------------------------------------------------------


def _stream():
    try:
        import constriction
    except ImportError:
        raise FocalCodecError(
            "entropy coding needs the constriction package: "
            "pip install 'focalcodec[entropy]'"
        ) from None
    return constriction.stream


def _to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def _decoder(data: bytes):
    if len(data) % 4:
        raise FormatError("entropy-coded payload is not a whole number of 32-bit words")
    return _stream().queue.RangeDecoder(
        np.frombuffer(data, dtype="<u4").astype(np.uint32)
    )


def _guard(fn, *args):
    """Run a constriction decoding call; its errors on corrupt data become FormatError."""
    try:
        return fn(*args)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise FormatError(
            f"the entropy-coded payload does not decode ({exc})"
        ) from None


def _max_tokens(num_bytes: int, bits_per_token: float) -> int:
    """Tokens that ``num_bytes`` can carry when each costs at least ``bits_per_token``.

    An honest payload of W words ends with at least one word of the final state, and
    the range left after the last token is at least 2**32 of the 64-bit state, so its
    tokens carry at most ``32 * W`` bits of (quantised) information; 32 bits of slack
    cover rounding.
    """
    return math.floor((8 * num_bytes + WORD_BITS) / bits_per_token)


class _Replay:
    """Codes again what a decoder reads, to check that the payload holds exactly that.

    The words of the re-coding track the words the decoder consumed. While the
    decoder stays within its data, a prefix re-codes to at most one word more than the
    payload (its unfinished final state); more means the decoder is reading past the
    end. At the end the re-coding must equal the payload: an encoder writes nothing
    else for these tokens.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.words = len(data) // 4
        self.encoder = _stream().queue.RangeEncoder()

    def add(self, symbols: np.ndarray, model, probs: np.ndarray | None = None) -> None:
        """Re-code ``symbols`` with the model (or family and ``probs``) that decoded them."""
        args = (model,) if probs is None else (model, probs)
        self.encoder.encode(np.asarray(symbols, dtype=np.int32), *args)
        if self.encoder.num_words() > self.words + 1:
            raise FormatError(
                "the entropy-coded payload ends before its tokens (the decoder would "
                "read past its data); the file is corrupted or forged"
            )

    def finish(self) -> None:
        if _to_bytes(self.encoder.get_compressed()) != self.data:
            raise FormatError(
                "the entropy-coded payload is not the coding of the tokens it claims; "
                "the file is corrupted or forged"
            )


# ---------------------------------------------------------------------------------------
# The adaptive model
# ---------------------------------------------------------------------------------------


class AdaptiveModel:
    """The weightless adaptive bit model (header entropy id ``ENTROPY_ADAPTIVE``)."""

    entropy = ENTROPY_ADAPTIVE
    entropy_hash = bytes(HASH_SIZE)

    def coder(self, bits: int, codec_hash: bytes = b"") -> AdaptiveCoder:
        """A fresh coder for ``bits``-bit tokens (any codec)."""
        return AdaptiveCoder(bits)


class AdaptiveCoder:
    """Adaptive binary context mixing over the bits of each token.

    Bit ``k`` of a token (most significant first) is predicted by two experts, mixed
    with Bayesian weights (each multiplied by the probability it gave the actual bit,
    renormalised, then a little mass shared back so the mix can switch):

    * ``position``: how often bit ``k`` was 1, whatever came before (speech);
    * ``context``: the same estimate refined in three steps, by the same bit of the
      previous token, by whether this token repeats the previous one so far, and by
      the bits of this token already coded (silence, tones and repeated patterns).

    Counts are integers; probabilities use only ``+ - * /`` in a fixed order, so every
    machine computes the same bits.

    Parameters
    ----------
    bits
        Bits per token.
    """

    entropy = ENTROPY_ADAPTIVE
    entropy_hash = bytes(HASH_SIZE)

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.counts: list[dict] = [{} for _ in range(4)]  # one table per refinement
        self.weights = [0.5, 0.5]
        self.prev = 0

    def _predict(self, keys: tuple) -> tuple[float, float]:
        """(position expert, context expert) probabilities of a 1."""
        p, experts = 0.5, []
        for level, key in enumerate(keys):
            n0, n1 = self.counts[level].get(key, (0, 0))
            p = (n1 + PRIOR[level] * p) / (n0 + n1 + PRIOR[level])
            if level == 0:
                experts.append(p)
                p = 0.5 * (p + 0.5)  # the context expert starts less sure
        experts.append(p)
        return experts[0], experts[1]

    def _update(self, keys: tuple, bit: int, p_pos: float, p_ctx: float) -> None:
        for level, key in enumerate(keys):
            n0, n1 = self.counts[level].get(key, (0, 0))
            n0, n1 = (n0, n1 + 1) if bit else (n0 + 1, n1)
            if n0 + n1 >= COUNT_LIMIT:
                n0, n1 = (n0 + 1) // 2, (n1 + 1) // 2
            self.counts[level][key] = (n0, n1)
        w0 = self.weights[0] * (p_pos if bit else 1.0 - p_pos)
        w1 = self.weights[1] * (p_ctx if bit else 1.0 - p_ctx)
        total = w0 + w1
        self.weights = [
            (1.0 - SHARE) * (w0 / total) + 0.5 * SHARE,
            (1.0 - SHARE) * (w1 / total) + 0.5 * SHARE,
        ]

    def _token(self, tok: int | None, out: list) -> int:
        """Code one token (``tok`` given: appends ``(bit, p1)`` to ``out``) or decode
        one (``tok`` None: ``out[0](p1)`` returns each bit)."""
        value, match = 0, 1
        for k in range(self.bits):
            shift = self.bits - 1 - k
            a = (self.prev >> shift) & 1
            keys = ((k,), (k, a), (k, a, match), (k, a, match, value))
            p_pos, p_ctx = self._predict(keys)
            p1 = self.weights[0] * p_pos + self.weights[1] * p_ctx
            if tok is None:
                bit = out[0](p1)
            else:
                bit = (tok >> shift) & 1
                out.append((bit, p1))
            self._update(keys, bit, p_pos, p_ctx)
            value = (value << 1) | bit
            match &= int(bit == a)
        self.prev = value
        return value

    def encode(self, toks: np.ndarray) -> bytes:
        """Code tokens (L,); returns the range coder's bytes."""
        pairs: list = []
        for tok in np.asarray(toks, dtype=np.int64).tolist():
            self._token(int(tok), pairs)
        stream = _stream()
        enc = stream.queue.RangeEncoder()
        if pairs:
            bits, probs = zip(*pairs, strict=True)
            enc.encode(
                np.array(bits, dtype=np.int32),
                stream.model.Bernoulli(perfect=False),
                np.array(probs, dtype=np.float64),
            )
        return _to_bytes(enc.get_compressed())

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decode ``count`` tokens, shape (count,) int64 (checked as :class:`_Replay`
        says: FormatError unless ``data`` is exactly their coding)."""
        stream = _stream()
        dec, model = _decoder(data), stream.model.Bernoulli
        family, replay = stream.model.Bernoulli(perfect=False), _Replay(data)
        seen: list[tuple[int, float]] = []

        def bit(p1: float) -> int:
            value = int(_guard(dec.decode, model(p1, perfect=False)))
            seen.append((value, p1))
            return value

        out = np.zeros(count, dtype=np.int64)
        for i in range(count):
            out[i] = self._token(None, [bit])
            if len(seen) >= REPLAY_EVERY * self.bits or i == count - 1:
                bits, probs = zip(*seen, strict=True)
                replay.add(np.array(bits), family, np.array(probs, dtype=np.float64))
                seen.clear()
        replay.finish()
        return out

    def max_tokens(self, num_bytes: int) -> int:
        """The most tokens an honest payload of ``num_bytes`` bytes can hold.

        The mixture gives either value of a bit at least ``SHARE / 2`` (the weight
        floor) times the position expert's floor ``(PRIOR[0] / 2) / (COUNT_LIMIT - 1 +
        PRIOR[0])``; less two units of the 24-bit quantisation, that bounds the most
        likely bit, hence the fewest bits a token can cost.
        """
        floor = (SHARE / 2) * (PRIOR[0] / 2) / (COUNT_LIMIT - 1 + PRIOR[0])
        floor -= 2.0 ** (1 - PRECISION)
        return _max_tokens(num_bytes, -self.bits * math.log2(1.0 - floor))

    def observe(self, toks: np.ndarray) -> None:
        """Update the model with tokens stored without coding."""
        for tok in np.asarray(toks, dtype=np.int64).tolist():
            self._token(int(tok), [])


# ---------------------------------------------------------------------------------------
# Coding with a predictor (token LM)
# ---------------------------------------------------------------------------------------


class PredictiveCoder:
    """Code each token with a :class:`Predictor`'s distribution (header id ``lm``).

    Parameters
    ----------
    predictor
        The exact next-token model; it is restarted here.
    entropy_hash
        The model's identity, as written in the header.
    """

    entropy = ENTROPY_LM

    def __init__(self, predictor: Predictor, entropy_hash: bytes) -> None:
        self.predictor = predictor
        self.entropy_hash = entropy_hash
        self._next = predictor.start()

    def _advance(self, toks: np.ndarray):
        """Feed tokens chunk by chunk; yields (chunk, probabilities of each token)."""
        for start in range(0, len(toks), CHUNK):
            part = toks[start : start + CHUNK]
            after = self.predictor.feed(part)
            yield part, np.concatenate([self._next[None], after[:-1]])
            self._next = after[-1]

    def encode(self, toks: np.ndarray) -> bytes:
        """Code tokens (L,); returns the range coder's bytes."""
        stream = _stream()
        enc = stream.queue.RangeEncoder()
        family = stream.model.Categorical(perfect=False)
        for part, probs in self._advance(np.asarray(toks, dtype=np.int64)):
            enc.encode(part.astype(np.int32), family, probs)
        return _to_bytes(enc.get_compressed())

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decode ``count`` tokens one at a time, shape (count,) int64 (checked as
        :class:`_Replay` says: FormatError unless ``data`` is exactly their coding)."""
        dec, model, replay = _decoder(data), _stream().model.Categorical, _Replay(data)
        out = np.zeros(count, dtype=np.int64)
        for i in range(count):
            dist = model(self._next, perfect=False)
            out[i] = _guard(dec.decode, dist)
            replay.add(out[i : i + 1], dist)
            self._next = self.predictor.feed(out[i : i + 1])[0]
        replay.finish()
        return out

    def max_tokens(self, num_bytes: int) -> int:
        """The most tokens an honest payload of ``num_bytes`` bytes can hold: every
        other token keeps one 24-bit unit, which bounds the most likely one."""
        others = (self.predictor.codebook_size - 1) * 2.0**-PRECISION
        return _max_tokens(num_bytes, -math.log2(1.0 - others))

    def observe(self, toks: np.ndarray) -> None:
        """Feed tokens stored without coding."""
        for _ in self._advance(np.asarray(toks, dtype=np.int64)):
            pass
