"""Tests for waveform <-> .fcz (focalcodec.pipeline.compress), using the golden tiny models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.errors import AudioError, FormatError, ModelMismatchError
from focalcodec.fcz import bitstream
from focalcodec.files.audio import load_audio, read_audio
from focalcodec.identity import header_for, model_name
from focalcodec.pipeline.compress import (
    compress,
    compress_to_file,
    decompress,
    decompress_from_file,
    encode_batch,
)
from support import GOLDEN_CASES, load_golden

CLEAN = "librispeech/dev-clean/84/84-121123-0000.flac"  # 2.09 s, 16 kHz
NOISY = "noisy/p257_003.flac"  # 48 kHz


@pytest.fixture(scope="module")
def codecs() -> dict[str, FocalCodec]:
    return {c: load_golden(c).codec for c in GOLDEN_CASES}


@pytest.fixture
def codec(golden_case: Path, codecs) -> FocalCodec:
    return codecs[golden_case.name]


@pytest.fixture(scope="module")
def speech(data_dir: Path) -> np.ndarray:
    sig, rate = read_audio(data_dir / "audio" / CLEAN)
    assert rate == 16000
    return sig


def test_roundtrip_bytes_and_file(codec, speech, tmp_path):
    data = compress(speech, 16000, codec)
    container = bitstream.loads(data)
    # The stored tokens are exactly the codec's tokens.
    with torch.inference_mode():
        toks = codec.sig_to_toks(torch.from_numpy(speech)[None])[0].numpy()
    np.testing.assert_array_equal(container.toks, toks)
    assert container.num_samples == len(speech)

    sig, rate = decompress(data, codec)
    expected_len = int(len(speech) * codec.sample_rate_output / codec.sample_rate_input)
    assert rate == codec.sample_rate_output
    assert sig.shape == (expected_len,)
    assert sig.dtype == torch.float32
    with torch.inference_mode():
        ref = codec.toks_to_sig(
            torch.from_numpy(toks)[None], output_length=expected_len
        )
    torch.testing.assert_close(sig, ref[0], atol=1e-6, rtol=0)

    path = tmp_path / "x.fcz"
    compress_to_file(speech, 16000, codec, path)
    assert path.read_bytes() == data
    sig_file, _ = decompress_from_file(path, codec)
    torch.testing.assert_close(sig_file, sig, atol=0, rtol=0)
    buf = io.BytesIO()
    compress_to_file(torch.from_numpy(speech)[None], 16000, codec, buf)
    assert buf.getvalue() == data


def _varint_bytes(n: int) -> int:
    """Bytes of an unsigned LEB128 varint (docs/format.md): 7 bits per byte."""
    return max(1, -(-n.bit_length() // 7))


def test_varint_sizes_of_the_spec() -> None:
    # docs/format.md: 16000 is `80 7d`, 320 is `c0 02`, 48000 is `80 f7 02`.
    sizes = {0: 1, 127: 1, 128: 2, 320: 2, 16000: 2, 16384: 3, 48000: 3}
    assert {n: _varint_bytes(n) for n in sizes} == sizes


@pytest.mark.parametrize(
    ("model_id", "name", "source_rate"),
    [(None, "", 16000), ("lucadellalib/focalcodec_50hz_4k_causal", None, 48000)],
)
def test_size_is_what_the_format_spec_says(
    codec, speech, monkeypatch, model_id, name, source_rate
):
    """Header and final packet, byte for byte as docs/format.md counts them."""
    if model_id is not None:  # as if loaded from the Hub: the name goes in the header
        monkeypatch.setattr(codec, "model_id", model_id)
        name = model_id.split("/")[1]
    # At 48 kHz: the same duration, resampled to the same 16 kHz length.
    sig = speech if source_rate == 16000 else np.repeat(speech, 3)
    data = compress(sig, source_rate, codec)
    num_samples = len(speech)  # at the model's 16 kHz
    with torch.inference_mode():
        count = codec.sig_to_toks(torch.from_numpy(speech)[None]).shape[1]
    hop = round(16000 / codec.token_rate)
    header = (
        3 + 1 + 1 + 8 + 1 + len(name)  # magic, version, bits, hash, name length, name
        + _varint_bytes(16000)
        + _varint_bytes(codec.sample_rate_output)
        + _varint_bytes(hop)
        + _varint_bytes(source_rate)
        + 4  # CRC32
    )  # fmt: skip
    packet = (
        1  # kind
        + _varint_bytes(count)
        + _varint_bytes(num_samples)
        + -(-count * codec.bits_per_token // 8)  # packed tokens
        + 4  # CRC32
    )
    assert len(bitstream.loads(data).toks) == count
    assert len(data) == header + packet
    assert 25 <= header - len(name) <= 28  # docs/format.md: header = 25..28 + k bytes


def test_48k_input_is_resampled_and_length_exact(codec, data_dir):
    sig48, rate = read_audio(data_dir / "audio" / NOISY)
    assert rate == 48000
    sig48 = sig48[: 48000 + 4321]
    data = compress(sig48, 48000, codec)
    container = bitstream.loads(data)
    assert container.header.source_sample_rate == 48000
    sig16, _ = load_audio(io.BytesIO(_flac(sig48, 48000)), 16000)
    assert container.num_samples == len(sig16)
    out, rate = decompress(data, codec)
    ratio = codec.sample_rate_output / codec.sample_rate_input
    assert len(out) == int(container.num_samples * ratio)


def _flac(sig: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, sig, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_wrong_model_is_refused(codecs, speech):
    a, b = codecs["noncausal_vocos_50hz"], codecs["causal_wavenext_50hz"]
    data = compress(speech[:8000], 16000, a)
    with pytest.raises(ModelMismatchError) as info:
        decompress(data, b)
    message = str(info.value)
    assert a.config_hash() in message and b.config_hash() in message


def test_model_resolution(codecs, speech, monkeypatch):
    codec = codecs["causal_vocos_25hz_postnorm"]
    data = compress(speech[:8000], 16000, codec)
    # A local model has no loadable name, so decoding needs the codec.
    with pytest.raises(FormatError, match="local model"):
        decompress(data)
    # A loader receives the header and may pick the model itself.
    seen = []
    sig, _ = decompress(data, lambda header: seen.append(header) or codec)
    assert seen[0].model_hash.hex() == codec.config_hash()
    assert len(sig) == 8000

    # With a name in the header, decompress(data) loads that model.
    monkeypatch.setattr(codec, "model_id", "someone/tiny-model")
    named = compress(speech[:8000], 16000, codec)
    assert bitstream.loads(named).header.model_name == "someone/tiny-model"
    calls = []

    def fake_from_pretrained(source, *args, **kwargs):
        calls.append(source)
        return codec

    monkeypatch.setattr(FocalCodec, "from_pretrained", fake_from_pretrained)
    sig2, _ = decompress(named)
    assert calls == ["someone/tiny-model"]
    torch.testing.assert_close(sig2, sig)


def test_model_names(codecs, golden_dir, monkeypatch):
    codec = codecs["noncausal_vocos_50hz"]
    cases = {
        str(golden_dir / "noncausal_vocos_50hz"): "",
        "lucadellalib/focalcodec_50hz": "focalcodec_50hz",
        "focalcodec_25hz": "focalcodec_25hz",
        "user/repo": "user/repo",
        "some/local/path/that/is/not/a/repo": "",
        None: "",
    }
    for model_id, expected in cases.items():
        monkeypatch.setattr(codec, "model_id", model_id)
        assert model_name(codec) == expected, model_id


def test_header_fields(codec):
    header = header_for(codec, 44100)
    assert header.token_rate == codec.token_rate
    assert header.bitrate == codec.bitrate
    assert header.bits_per_token == codec.bits_per_token
    assert 2**header.bits_per_token == codec.codebook_size
    assert header.model_hash.hex() == codec.config_hash()
    assert header.source_sample_rate == 44100


def test_corrupted_and_truncated_data(codecs, speech):
    codec = codecs["noncausal_vocos_12_5hz_legacy"]
    data = compress(speech[:16000], 16000, codec)
    with pytest.raises(bitstream.TruncatedError):
        decompress(data[:-1], codec)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(bitstream.ChecksumError):
        decompress(bytes(bad), codec)
    empty = bitstream.dumps(header_for(codec), np.zeros(0, dtype=np.int64), 0)
    with pytest.raises(FormatError, match="no tokens"):
        decompress(empty, codec)


@pytest.mark.parametrize(
    "sig, message",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.full(1000, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(100, dtype=np.float32), "too short"),
        (np.zeros((2, 1000), dtype=np.float32), "mono"),
        (np.zeros(1000, dtype=np.int16), "floating point"),
    ],
)
def test_bad_signals(codecs, sig, message):
    with pytest.raises(AudioError, match=message):
        compress(sig, 16000, codecs["noncausal_vocos_50hz"])


def test_encode_batch_matches_one_by_one(codecs, speech):
    codec = codecs["causal_wavenext_50hz"]
    sigs = [speech[:6400], speech[3200:9600], speech[:4000]]
    batched = encode_batch(sigs, codec)
    for sig, toks in zip(sigs, batched, strict=True):
        np.testing.assert_array_equal(toks, encode_batch([sig], codec)[0])


def test_streaming_encoder_writes_packets_a_decoder_reads_early(codecs, speech):
    """A causal model streamed chunk by chunk: one packet per chunk, decodable as read."""
    from focalcodec.streaming.steps import decode_step, encode_step

    codec = codecs["causal_wavenext_50hz"]
    sig = torch.from_numpy(speech[: 8 * codec.chunk_size])[None]
    buf = io.BytesIO()
    writer = bitstream.Writer(buf, header_for(codec, 16000))
    state = None
    with torch.inference_mode():
        for start in range(0, sig.shape[1], codec.chunk_size):
            toks, _, state = encode_step(
                codec, sig[:, start : start + codec.chunk_size], state
            )
            writer.write(toks[0].numpy())
    writer.finish(sig.shape[1])
    # Same tokens as compressing the whole signal at once.
    offline = bitstream.loads(compress(sig[0], 16000, codec))
    np.testing.assert_array_equal(bitstream.loads(buf.getvalue()).toks, offline.toks)

    reader = bitstream.Reader(io.BytesIO(buf.getvalue()))
    pieces, state = [], None
    with torch.inference_mode():
        for toks in reader.packets():
            codes = codec.toks_to_codes(torch.from_numpy(toks)[None])
            piece, state = decode_step(codec, codes, state)
            pieces.append(piece)
    assert len(pieces) == 8
    streamed = torch.cat(pieces, dim=1)[0]
    whole, _ = decompress(buf.getvalue(), codec)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=0)
