"""The bounds every ``.fcz`` header value must respect (``docs/format.md``).

Checked by :mod:`focalcodec.fcz.bitstream` after a header's or packet's checksum and before
anything is allocated for it, so that a file crafted with valid checksums (an hour of
audio claimed by four tokens, an output rate of 1 Hz) is refused, not decoded.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import FormatError

__all__ = [
    "HASH_SIZE",
    "LENGTH_SLACK_HOPS",
    "MAX_NAME_BYTES",
    "MAX_RATE",
    "MIN_RATE",
    "check_length",
    "check_rates",
]

# Bytes of the model and entropy-model hashes a header stores (the start of a digest).
HASH_SIZE = 8
# Longest model name a header can carry, in UTF-8 bytes (a one-byte length field).
MAX_NAME_BYTES = 255

# Sample rates outside this range are corruption or forgery, not a real model (and a
# forged rate would make the decoder allocate absurd outputs). Source rates may also be
# 0 (unknown); a hop lies in [1, sample_rate_input] (at least one token per second).
MIN_RATE, MAX_RATE = 1000, 768_000
# The sample count may differ from num_tokens * hop by less than this many hops: the
# encoder's front-end drops or pads up to about one frame at each end (a non-causal
# WavLM gives 49 tokens for 16001 samples at 50 Hz: 1.003 hops short).
LENGTH_SLACK_HOPS = 2


class _Rates(Protocol):
    sample_rate_input: int
    sample_rate_output: int
    hop_length: int
    source_sample_rate: int


def check_rates(header: _Rates) -> None:
    """Raise :class:`FormatError` unless every rate of ``header`` is plausible."""
    rates = {
        "sample_rate_input": header.sample_rate_input,
        "sample_rate_output": header.sample_rate_output,
        "source_sample_rate": header.source_sample_rate or MIN_RATE,
    }
    for field, value in rates.items():
        if not MIN_RATE <= value <= MAX_RATE:
            raise FormatError(
                f"header {field}={value} Hz is outside [{MIN_RATE}, {MAX_RATE}]"
            )
    if not 1 <= header.hop_length <= header.sample_rate_input:
        raise FormatError(
            f"header hop_length={header.hop_length} must be in [1, "
            f"sample_rate_input={header.sample_rate_input}]"
        )


def check_length(header: _Rates, num_tokens: int, num_samples: int) -> None:
    """Raise :class:`FormatError` unless ``num_samples`` fits ``num_tokens`` tokens.

    The encoder gives about one token per hop, so the sample count lies within
    :data:`LENGTH_SLACK_HOPS` hops of ``num_tokens * hop_length``; a header that claims
    more is refused, and the decoded length is always justified by the tokens.
    """
    hop = header.hop_length
    if abs(num_samples - num_tokens * hop) >= LENGTH_SLACK_HOPS * hop:
        raise FormatError(
            f"the file claims {num_samples} samples for {num_tokens} tokens of "
            f"{hop} samples (about {num_tokens * hop}); it is corrupted or forged"
        )
