"""Tests for the .fcz container (focalcodec.fcz.bitstream)."""

from __future__ import annotations

import io
import json
import math
import zlib

import numpy as np
import pytest

from focalcodec.errors import FormatError
from focalcodec.fcz import bitstream as bs
from support import load_golden

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def make_header(bits: int = 13, name: str = "focalcodec_50hz") -> bs.Header:
    return bs.Header(
        bits_per_token=bits,
        model_hash=bytes(range(8)),
        model_name=name,
        sample_rate_input=16000,
        sample_rate_output=24000,
        hop_length=320,
        source_sample_rate=48000,
    )


def small_container() -> bytes:
    """Header, two data packets and a final packet holding tokens too."""
    buf = io.BytesIO()
    writer = bs.Writer(buf, make_header(bits=11, name="tiny"))
    rng = np.random.default_rng(0)
    writer.write(rng.integers(0, 2048, size=5))
    writer.write(rng.integers(0, 2048, size=3))
    writer.finish(3200, rng.integers(0, 2048, size=2))
    return buf.getvalue()


# ------------------------------------------------------------------------ bit packing


def test_pack_known_bit_pattern():
    # 13-bit tokens 8191 and 0, MSB first: thirteen 1s, thirteen 0s, six padding 0s.
    assert bs.pack_tokens(np.array([8191, 0]), 13) == bytes([0xFF, 0xF8, 0x00, 0x00])
    # 11-bit token 1 = 00000000001, then 5 padding zeros.
    assert bs.pack_tokens(np.array([1]), 11) == bytes([0x00, 0x20])
    # Two 4-bit tokens share one byte, high nibble first.
    assert bs.pack_tokens(np.array([0xA, 0x5]), 4) == bytes([0xA5])


@pytest.mark.parametrize("bits", range(1, 33))
def test_pack_roundtrip_every_width(bits):
    rng = np.random.default_rng(bits)
    toks = rng.integers(0, 2**bits, size=41, dtype=np.int64)
    toks[:2] = [0, 2**bits - 1]
    data = bs.pack_tokens(toks, bits)
    assert len(data) == math.ceil(41 * bits / 8)
    out = bs.unpack_tokens(data, 41, bits)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, toks)


def test_pack_empty_and_out_of_range():
    assert bs.pack_tokens(np.zeros(0, dtype=np.int64), 13) == b""
    assert bs.unpack_tokens(b"", 0, 13).shape == (0,)
    with pytest.raises(ValueError, match="fit in 13 bits"):
        bs.pack_tokens(np.array([8192]), 13)
    with pytest.raises(ValueError):
        bs.pack_tokens(np.array([-1]), 13)
    with pytest.raises(FormatError, match="padding"):
        bs.unpack_tokens(bytes([0x00, 0x21]), 1, 11)


def test_golden_tokens_roundtrip(golden_case):
    """Real tokens from the reference implementation survive the container."""
    config = json.loads((golden_case / "config.json").read_text())
    bits = int(math.log2(config["quantizer_config"]["codebook_size"]))
    toks = load_golden(golden_case.name).io["output.toks"].numpy()
    header = make_header(bits=bits)
    for row in toks:
        num_samples = len(row) * 320 - 123
        data = bs.dumps(header, row, num_samples=num_samples)
        overhead = len(data) - math.ceil(len(row) * bits / 8)
        varints = len(bs._varint(len(row))) + len(bs._varint(num_samples))
        assert overhead == len(header.to_bytes()) + 1 + varints + 4
        got = bs.loads(data)
        np.testing.assert_array_equal(got.toks, row)
        assert got.header == header
        assert got.num_samples == num_samples


# ------------------------------------------------------------------------ header


def test_header_properties_and_roundtrip():
    header = make_header()
    assert header.token_rate == 50.0
    assert header.bitrate == 650.0
    got = bs.loads(bs.dumps(header, np.arange(3), 960)).header
    assert got == header


def test_header_size_is_small():
    # magic 3 + version 1 + bits 1 + hash 8 + name length 1 + name 15 + varints
    # (16000: 2, 24000: 3, 320: 2, 48000: 3) + CRC 4.
    assert len(make_header().to_bytes()) == 3 + 1 + 1 + 8 + 1 + 15 + 2 + 3 + 2 + 3 + 4


@pytest.mark.parametrize(
    "field, value",
    [
        ("bits_per_token", 0),
        ("bits_per_token", 33),
        ("model_hash", b"short"),
        ("model_name", "x" * 256),
        ("sample_rate_input", 0),
        ("hop_length", -1),
        ("source_sample_rate", -5),
    ],
)
def test_header_rejects_bad_fields(field, value):
    fields = make_header().__dict__ | {field: value}
    with pytest.raises(FormatError):
        bs.Header(**fields)


def test_unicode_model_name():
    header = make_header(name="modèle/ü")
    data = bs.dumps(header, np.arange(4), 1280)
    assert bs.loads(data).header.model_name == "modèle/ü"


# ------------------------------------------------------------------------ packets


def test_incremental_write_and_read():
    data = small_container()
    reader = bs.Reader(io.BytesIO(data))
    sizes = [len(p) for p in reader.packets()]
    assert sizes == [5, 3, 2]
    assert reader.num_samples == 3200
    assert reader.num_tokens == 10


def test_reader_decodes_before_the_end():
    """Packets are usable as they arrive: a stream cut after packet 1 yields packet 1."""
    full = small_container()
    header_size = len(make_header(bits=11, name="tiny").to_bytes())
    first_packet = 1 + 1 + math.ceil(5 * 11 / 8) + 4
    reader = bs.Reader(io.BytesIO(full[: header_size + first_packet]))
    packets = reader.packets()
    first = next(packets)
    assert first.shape == (5,)
    np.testing.assert_array_equal(first, bs.loads(full).toks[:5])
    with pytest.raises(bs.TruncatedError):
        next(packets)


def test_unfinished_stream_reads_as_truncated():
    buf = io.BytesIO()
    writer = bs.Writer(buf, make_header())
    writer.write(np.arange(10))
    with pytest.raises(bs.TruncatedError, match="truncated"):
        bs.loads(buf.getvalue())


def test_writer_misuse():
    writer = bs.Writer(io.BytesIO(), make_header())
    with pytest.raises(ValueError):
        writer.write(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        writer.write(np.array([0.5]))
    writer.finish(100)
    with pytest.raises(FormatError):
        writer.finish(100)
    with pytest.raises(FormatError):
        writer.write(np.arange(3))


def test_large_input_is_split_into_packets(monkeypatch):
    monkeypatch.setattr(bs, "MAX_PACKET_TOKENS", 7)
    toks = np.arange(30) % 8192
    reader = bs.Reader(io.BytesIO(bs.dumps(make_header(), toks, 9600)))
    assert [len(p) for p in reader.packets()] == [7, 7, 7, 7, 2]


def test_empty_stream_is_valid():
    got = bs.loads(bs.dumps(make_header(), np.zeros(0, dtype=np.int64), 0))
    assert got.toks.shape == (0,)
    assert got.num_samples == 0


# ------------------------------------------------------------------------ corruption


def test_every_single_byte_corruption_is_detected():
    data = small_container()
    assert len(data) < 80
    for pos in range(len(data)):
        for value in range(256):
            if value == data[pos]:
                continue
            bad = data[:pos] + bytes([value]) + data[pos + 1 :]
            with pytest.raises(FormatError):
                bs.loads(bad)


def test_every_truncation_is_detected():
    data = small_container()
    for size in range(len(data)):
        with pytest.raises(bs.TruncatedError):
            bs.loads(data[:size])
    assert isinstance(bs.TruncatedError("x"), EOFError)


def test_trailing_data_is_rejected():
    with pytest.raises(FormatError, match="after the final packet"):
        bs.loads(small_container() + b"\x00")


def test_dropped_or_reordered_packets_are_detected():
    header = make_header(bits=11, name="tiny")
    h = len(header.to_bytes())
    p1 = 1 + 1 + math.ceil(5 * 11 / 8) + 4
    p2 = 1 + 1 + math.ceil(3 * 11 / 8) + 4
    data = small_container()
    head, a, b, final = data[:h], data[h : h + p1], data[h + p1 : h + p1 + p2], None
    final = data[h + p1 + p2 :]
    for bad in (head + b + final, head + b + a + final, head + a + a + b + final):
        with pytest.raises(bs.ChecksumError):
            bs.loads(bad)


def test_clear_messages():
    with pytest.raises(FormatError, match="not a FocalCodec .fcz file"):
        bs.loads(b"RIFF\x00\x00\x00\x00WAVE")
    data = bytearray(small_container())
    data[3] = 9
    with pytest.raises(FormatError, match="unsupported .fcz version 9"):
        bs.loads(bytes(data))
    data = bytearray(small_container())
    data[-1] ^= 0xFF
    with pytest.raises(bs.ChecksumError, match="corrupted"):
        bs.loads(bytes(data))


def _with_crc(body: bytes, seed: int = 0) -> tuple[bytes, int]:
    crc = zlib.crc32(body, seed)
    return body + crc.to_bytes(4, "big"), crc


def test_semantic_checks_behind_valid_checksums():
    # A header whose CRC is right but whose fields are impossible.
    base = bs.MAGIC + bytes([bs.VERSION, 40]) + bytes(8) + b"\x00" + b"\x01" * 4
    with pytest.raises(FormatError, match="bits per token"):
        bs.loads(_with_crc(base)[0])
    base = bs.MAGIC + bytes([bs.VERSION, 13]) + bytes(8) + b"\x02\xff\xfe" + b"\x01" * 4
    with pytest.raises(FormatError, match="UTF-8"):
        bs.loads(_with_crc(base)[0])
    # Non-minimal varint (0x81 0x00 == 1) for the input rate.
    base = bs.MAGIC + bytes([bs.VERSION, 13]) + bytes(8) + b"\x00\x81\x00" + b"\x01" * 3
    with pytest.raises(FormatError, match="non-minimal"):
        bs.loads(_with_crc(base)[0])
    # A packet of an unknown kind, and one claiming too many tokens.
    rates = b"".join(bs._varint(r) for r in (16000, 16000, 320, 0))
    header, crc = _with_crc(bs.MAGIC + bytes([1, 13]) + bytes(8) + b"\x00" + rates)
    with pytest.raises(FormatError, match="unknown packet kind"):
        bs.loads(header + _with_crc(b"\x07\x00", crc)[0])
    with pytest.raises(FormatError, match="exceed"):
        bs.loads(header + b"\x01\xff\xff\xff\x7f")


# ------------------------------------------------------------------------ fuzzing


def _loads_or_format_error(data: bytes) -> None:
    try:
        got = bs.loads(data)
    except FormatError:
        return
    assert got.toks.dtype == np.int64
    assert (got.toks >= 0).all() and (got.toks < 2**got.header.bits_per_token).all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data):
    _loads_or_format_error(data)
    _loads_or_format_error(bs.MAGIC + bytes([bs.VERSION]) + data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_container(draw):
    data = bytearray(small_container())
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["set", "insert", "delete"]))
        pos = draw.draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[pos] = draw.draw(st.integers(0, 255))
        elif op == "insert":
            data.insert(pos, draw.draw(st.integers(0, 255)))
        else:
            del data[pos]
    _loads_or_format_error(bytes(data))


@settings(max_examples=300, deadline=None)
@given(
    bits=st.integers(0, 255),
    name=st.binary(max_size=12),
    rates=st.lists(st.integers(0, 2**40), min_size=4, max_size=4),
    kind=st.integers(0, 3),
    count=st.integers(0, 40),
    num_samples=st.integers(0, 2**62),
    payload=st.binary(max_size=80),
)
def test_fuzz_with_valid_checksums(
    bits, name, rates, kind, count, num_samples, payload
):
    """Random field values behind correct CRCs reach the semantic checks."""
    varint = bs._varint
    fields = bytes([bits]) + bytes(8) + bytes([len(name)]) + name
    fields += b"".join(varint(r) for r in rates)
    header, crc = _with_crc(bs.MAGIC + bytes([bs.VERSION]) + fields)
    packet = bytes([kind]) + varint(count)
    packet += varint(num_samples) if kind == 2 else b""
    _loads_or_format_error(header + _with_crc(packet + payload, crc)[0])
