"""Entropy-coded packets must account for every token they claim.

A range decoder never runs out of data: past the end it reads zeros and keeps producing
tokens, so before this check a 41-byte ``.fcz`` with an empty coded payload decoded to
2000 s of audio, and 1.8 kB claimed 1171 hours. The files here are built byte by byte,
with every CRC recomputed by the test, around payloads made by the test: empty ones,
honest ones whose token count was raised, cut ones and random bytes. Each must be a
one-line FormatError, found before (or while) decoding, never audio.
"""

from __future__ import annotations

import math
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcodec.cli import main
from focalcodec.errors import FormatError
from focalcodec.fcz import bitstream as bs
from focalcodec.fcz.entropy import AdaptiveModel
from support import varint

pytest.importorskip("constriction")

BITS, HOP = 12, 320


def header() -> bytes:
    """A version-2 header (adaptive model), CRC included, built by hand."""
    head = b"FCZ" + bytes([2, BITS]) + bytes(8) + bytes([0])
    head += b"".join(varint(r) for r in (16000, 24000, HOP, 0)) + bytes([1])
    return head + zlib.crc32(head).to_bytes(4, "big")


def coded_file(packets: list[tuple[int, bytes]]) -> bytes:
    """Header and coded packets (count, payload), the last one final, CRCs chained."""
    data = header()
    crc = int.from_bytes(data[-4:], "big")
    total = sum(count for count, _ in packets)
    for k, (count, payload) in enumerate(packets):
        final = k == len(packets) - 1
        body = bytes([(2 if final else 1) | 0x10]) + varint(count)
        if final:
            body += varint(total * HOP)
        body += varint(len(payload)) + payload
        crc = zlib.crc32(body, crc)
        data += body + crc.to_bytes(4, "big")
    return data


def honest(toks) -> bytes:
    """The payload the encoder itself writes for ``toks`` (a fresh stream)."""
    return AdaptiveModel().coder(BITS).encode(np.asarray(toks))


def decode(data: bytes) -> np.ndarray:
    return bs.loads(data, AdaptiveModel().coder(BITS)).toks


def test_the_helpers_make_files_the_reader_accepts():
    toks = np.arange(40) % 9
    assert np.array_equal(decode(coded_file([(40, honest(toks))])), toks)


def test_an_empty_payload_claiming_2000_seconds_is_refused(tmp_path, capsys):
    """The reported case: 41 bytes, valid CRCs, decoded to 2000 s of audio."""
    data = coded_file([(100_000, b"")])
    assert len(data) < 45
    start = time.process_time()
    with pytest.raises(FormatError, match="empty coded payload cannot hold 100000"):
        decode(data)
    assert time.process_time() - start < 1.0  # refused before decoding, not after
    path = tmp_path / "forged.fcz"
    path.write_bytes(data)
    out = tmp_path / "forged.wav"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra", [1_000, 100_000, (1 << 20) - 40])
def test_an_honest_payload_cannot_claim_more_tokens(extra):
    """What the encoder wrote for 40 tokens, with the count raised."""
    payload = honest(np.arange(40) % 9)
    with pytest.raises(
        FormatError, match="payload ends before its tokens|not the coding"
    ):
        decode(coded_file([(40 + extra, payload)]))


@pytest.mark.parametrize("cut", [4, 8])
def test_a_cut_payload_is_refused(cut):
    payload = honest(np.random.default_rng(0).integers(0, 2**BITS, 60))
    with pytest.raises(FormatError):
        decode(coded_file([(60, payload[:-cut])]))


def test_the_1171_hour_file_is_refused_at_its_first_packet():
    """1.8 kB of maximal packets (2**20 tokens each) with empty payloads; one-word
    payloads read past their end at once."""
    data = coded_file([(1 << 20, b"")] * 201)
    assert len(data) < 1900
    with pytest.raises(FormatError, match="packet at token 0: an empty coded payload"):
        decode(data)
    with pytest.raises(FormatError, match="packet at token 0: .* ends before its"):
        decode(coded_file([(1 << 20, bytes(4))] * 201))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.binary(min_size=1, max_size=12))
def test_random_words_never_decode_to_more_than_they_code(count, raw):
    payload = raw + bytes(-len(raw) % 4)
    try:
        toks = decode(coded_file([(count, payload)]))
    except FormatError:
        return
    # Accepted only when the payload is exactly what the encoder writes for them.
    assert len(toks) == count and honest(toks) == payload


def test_the_count_bound_never_refuses_an_honest_payload():
    """A long silence is the most the adaptive model can compress."""
    coder = AdaptiveModel().coder(BITS)
    for count in (1, 100, 5000):
        payload = AdaptiveModel().coder(BITS).encode(np.zeros(count, np.int64))
        assert count <= coder.max_tokens(len(payload))
    # The bound itself, from the model's probability floor (derived here again):
    # weights >= SHARE/2, position expert >= 2/1027, less two 24-bit units.
    floor = (1e-3 / 2) * (2 / 1027) - 2.0**-23
    per_token = -BITS * math.log2(1 - floor)
    assert coder.max_tokens(8) == math.floor((64 + 32) / per_token)
