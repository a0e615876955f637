"""The ``.fcz`` format defends itself: crafted headers with valid checksums are refused.

The files here are built byte by byte with CRC32s recomputed by the test (so the checksum
never hides a bad value), as a hostile writer would: a sample count that claims an hour
for four tokens, impossible rates, a model name that is a local path. Every one must be a
one-line :class:`~focalcodec.errors.FormatError` before anything is allocated for it,
also through ``decode`` and ``info``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.errors import FormatError, ModelMismatchError
from focalcodec.fcz import bitstream, limits
from focalcodec.identity import header_for, loadable_name
from focalcodec.pipeline.compress import decompress
from support import varint

MODEL = "causal_wavenext_50hz"  # 16 kHz in, 24 kHz out, 12-bit tokens, hop 320


def crafted(
    *,
    bits: int = 12,
    model_hash: bytes = bytes(8),
    name: bytes = b"",
    rates: tuple[int, int, int, int] = (16000, 24000, 320, 48000),
    num_tokens: int = 4,
    num_samples: int = 1280,
) -> bytes:
    """A container with one final packet of zero tokens, every CRC correct."""
    head = b"FCZ" + bytes([1, bits]) + model_hash + bytes([len(name)]) + name
    head += b"".join(varint(r) for r in rates)
    crc = zlib.crc32(head)
    payload = bytes((num_tokens * bits + 7) // 8)
    packet = bytes([2]) + varint(num_tokens) + varint(num_samples) + payload
    return (
        head
        + crc.to_bytes(4, "big")
        + packet
        + zlib.crc32(packet, crc).to_bytes(4, "big")
    )


@pytest.fixture(scope="module")
def codec(golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / MODEL).eval()


@pytest.fixture(scope="module")
def model_hash(codec) -> bytes:
    return header_for(codec).model_hash


def run(*args) -> int:
    return main([str(a) for a in args])


def test_crafted_helper_matches_the_writer(model_hash):
    """The test's own serialiser writes what the library writes (so it can be trusted
    to build the bad files below)."""
    header = bitstream.Header(12, model_hash, "", 16000, 24000, 320, 48000)
    expected = bitstream.dumps(header, np.zeros(4, dtype=np.int64), 1280)
    assert crafted(model_hash=model_hash) == expected


def test_an_hour_claimed_by_four_tokens_is_refused(codec, model_hash, tmp_path, capsys):
    """The reported case: a 282-byte file decoded into 172.8 MB of audio."""
    data = crafted(model_hash=model_hash, num_samples=3600 * 16000)
    assert len(data) < 300
    with pytest.raises(FormatError, match="claims 57600000 samples for 4 tokens"):
        bitstream.loads(data)
    with pytest.raises(FormatError, match="claims"):
        decompress(data, codec)
    path = tmp_path / "hour.fcz"
    path.write_bytes(data)
    out = tmp_path / "hour.wav"
    assert run("decode", path, "-o", out, "-m", codec.model_id, "-q") == 1
    assert run("info", path) == 1
    err = capsys.readouterr().err
    assert err.count("claims 57600000 samples") == 2 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"rates": (16000, 1, 320, 48000)}, "sample_rate_output=1 Hz"),
        ({"rates": (0, 24000, 320, 48000)}, "sample_rate_input=0 Hz"),
        ({"rates": (2**32 - 1, 24000, 320, 0)}, "sample_rate_input=4294967295"),
        ({"rates": (16000, 24000, 0, 48000)}, "hop_length=0"),
        ({"rates": (16000, 24000, 16001, 48000)}, "hop_length=16001"),
        ({"rates": (16000, 24000, 320, 5)}, "source_sample_rate=5 Hz"),
        ({"rates": (16000, 2**40, 320, 0)}, "sample_rate_output"),
        ({"bits": 0}, "bits per token"),
        ({"bits": 40}, "bits per token"),
        ({"name": b"a\nb"}, "control characters"),
        ({"name": b"\x1b[2Jx"}, "control characters"),
        ({"num_samples": 0}, "claims 0 samples for 4 tokens"),
        ({"num_tokens": 0, "num_samples": 640}, "claims 640 samples for 0 tokens"),
        ({"num_samples": 2**62}, "claims"),
    ],
)
def test_impossible_fields_are_refused(fields, message, tmp_path, capsys):
    data = crafted(**fields)
    with pytest.raises(FormatError, match=message.replace("[", r"\[")):
        bitstream.loads(data)
    path = tmp_path / "bad.fcz"
    path.write_bytes(data)
    assert run("info", path) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_rates_must_match_the_model(codec, model_hash):
    for rates, field in [
        ((16000, 48000, 320, 0), "sample_rate_output"),
        ((22050, 24000, 320, 0), "sample_rate_input"),
        ((16000, 24000, 640, 0), "hop_length"),
    ]:
        n = 1280 if field != "hop_length" else 2560
        data = crafted(model_hash=model_hash, rates=rates, num_samples=n)
        with pytest.raises(ModelMismatchError, match=field):
            decompress(data, codec)


@pytest.mark.parametrize(
    "name",
    [
        "evil_model",
        "./evil_model",
        "../evil",
        "~",
        "~/models/x",
        "/etc",
        "a/..",
        "x/./y",
    ],
)
def test_a_header_name_is_never_loaded_from_a_local_path(
    name, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil_model").mkdir()
    (tmp_path / "evil_model" / "config.json").write_text("{}")

    def must_not_load(*args, **kwargs):
        raise AssertionError(f"tried to load {args}")

    monkeypatch.setattr(FocalCodec, "from_pretrained", must_not_load)
    data = crafted(name=name.encode(), num_samples=1280)
    header = bitstream.loads(data).header
    with pytest.raises(FormatError, match="not loaded implicitly"):
        loadable_name(header)
    with pytest.raises(FormatError, match="not loaded implicitly"):
        decompress(data)
    (tmp_path / "x.fcz").write_bytes(data)
    assert run("decode", "x.fcz", "-o", "x.wav", "-q") == 1
    assert "not loaded implicitly" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_packaged_and_hub_names_stay_loadable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("focalcodec_50hz", "lucadellalib/focalcodec_25hz", "user/repo.v2"):
        header = bitstream.loads(crafted(name=name.encode())).header
        assert loadable_name(header) == name


@settings(max_examples=300, deadline=None)
@given(
    bits=st.integers(0, 40),
    rates=st.tuples(
        st.integers(0, 2**33),
        st.integers(0, 2**33),
        st.integers(0, 2**20),
        st.integers(0, 2**33),
    ),
    num_tokens=st.integers(0, 64),
    num_samples=st.integers(0, 2**63 - 1),
)
def test_whatever_parses_is_bounded(bits, rates, num_tokens, num_samples):
    """Random header values behind valid CRCs: refused, or within the bounds that
    limit what decoding allocates."""
    try:
        container = bitstream.loads(
            crafted(
                bits=bits, rates=rates, num_tokens=num_tokens, num_samples=num_samples
            )
        )
    except FormatError:
        return
    h = container.header
    low, high = limits.MIN_RATE, limits.MAX_RATE
    assert low <= h.sample_rate_input <= high and low <= h.sample_rate_output <= high
    assert 1 <= h.hop_length <= h.sample_rate_input
    assert abs(container.num_samples - num_tokens * h.hop_length) < 2 * h.hop_length
    # The decoded length is therefore bounded by the tokens actually in the file.
    out = container.num_samples * h.sample_rate_output / h.sample_rate_input
    assert (
        out
        < (num_tokens + 2) * h.hop_length * h.sample_rate_output / h.sample_rate_input
    )


def test_truncated_files_fail_cleanly_through_the_cli(
    codec, data_dir, tmp_path, capsys
):
    clip = data_dir / "audio" / "multilingual" / "it" / "agent-loggedoff.flac"
    fcz = tmp_path / "x.fcz"
    model = codec.model_id
    assert run("encode", clip, "-o", fcz, "-m", model, "-q") == 0
    data = fcz.read_bytes()
    for cut in (0, 3, 10, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.fcz"
        bad.write_bytes(data[:cut])
        out = tmp_path / f"cut{cut}.wav"
        assert run("decode", bad, "-o", out, "-m", model, "-q") == 1
        err = capsys.readouterr().err
        assert (
            "truncated" in err or "not a FocalCodec" in err
        ) and "Traceback" not in err
        assert not out.exists()
