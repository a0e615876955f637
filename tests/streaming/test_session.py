"""Streaming sessions: parity with offline processing and the golden stream, misuse errors.

References: the golden ``output.stream.*`` tensors (made by the original package) and our
own offline methods, which tests/test_golden.py checks against the golden outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focalcodec import FocalCodec
from focalcodec.errors import AudioError, FocalCodecError, InputError, StreamingError
from focalcodec.streaming.session import StreamDecoder, StreamEncoder, StreamingSession
from focalcodec.streaming.steps import StreamState, decode_step, encode_step
from support import CAUSAL, Golden, load_golden, max_abs

TOL = 1e-4


def _split(total: int, sizes: list[int]) -> list[tuple[int, int]]:
    """Cut range(total) into consecutive pieces of the given sizes (cycled)."""
    bounds, start, i = [], 0, 0
    while start < total:
        stop = min(total, start + sizes[i % len(sizes)])
        bounds.append((start, stop))
        start, i = stop, i + 1
    return bounds


def _stream(session: StreamingSession, sig: torch.Tensor, sizes: list[int]):
    toks, out = [], []
    for a, b in _split(sig.shape[1], sizes):
        t = session.encode(sig[:, a:b])
        toks.append(t)
        out.append(session.decode(t))
    tail = session.flush()
    return torch.cat([*toks, tail.toks], 1), torch.cat([*out, tail.sig], 1)


@pytest.mark.parametrize("golden", CAUSAL, indirect=True)
@pytest.mark.parametrize("sizes", [[1280], [1], [777, 3001, 0, 64], [20480]])
def test_session_matches_golden_stream(golden: Golden, sizes) -> None:
    codec, io, *_ = golden
    sig = io["input.sig"]
    if sizes == [1]:  # one sample at a time is slow: only the first two blocks
        sig = sig[:, : 2 * codec.chunk_size]
    with StreamingSession(codec, batch_size=2) as stream:
        toks, out = _stream(stream, sig, sizes)
    ref_toks = io["output.stream.toks"][:, : toks.shape[1]]
    ref_sig = io["output.stream.sig"][:, : out.shape[1]]
    assert torch.equal(toks, ref_toks)
    assert out.shape[1] == sig.shape[1] * codec.sample_rate_output // 16000
    assert max_abs(out, ref_sig) <= TOL


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(CAUSAL),
    length=st.integers(320, 9000),
    sizes=st.lists(st.integers(0, 4000), min_size=1, max_size=4),
    chunks_per_step=st.integers(1, 3),
)
def test_stream_equals_offline_for_any_pieces(
    case, length, sizes, chunks_per_step
) -> None:
    if not any(sizes):
        sizes = [*sizes, 1]
    codec, io, *_ = load_golden(case)
    sig = io["input.sig"][:, :length]
    with torch.no_grad():
        ref = codec.forward(sig)
    with StreamingSession(codec, 2, chunks_per_step=chunks_per_step) as stream:
        toks, out = _stream(stream, sig, sizes)
    assert torch.equal(toks, ref.toks)
    assert max_abs(out, ref.sig) <= TOL


@pytest.mark.parametrize("golden", CAUSAL, indirect=True)
@pytest.mark.parametrize("pad", ["zeros", "edge"])
def test_padded_tail_equals_offline_on_padded_input(golden: Golden, pad) -> None:
    codec, io, *_ = golden
    n = 3 * codec.chunk_size + 517
    sig = io["input.sig"][:, :n]
    missing = -n % codec.chunk_size
    if pad == "zeros":
        padded = F.pad(sig, (0, missing))
    else:
        padded = torch.cat([sig, sig[:, -1:].expand(-1, missing)], 1)
    with torch.no_grad():
        ref_toks = codec.sig_to_toks(padded)
        ref_sig = codec.toks_to_sig(ref_toks)
    with StreamingSession(codec, 2, pad=pad) as stream:
        toks, out = _stream(stream, sig, [1000])
    assert torch.equal(toks, ref_toks)
    want = n * codec.sample_rate_output // codec.sample_rate_input
    assert out.shape[1] == want
    assert max_abs(out, ref_sig[:, :want]) <= TOL


@pytest.mark.parametrize("golden", CAUSAL, indirect=True)
def test_decoder_stream_equals_offline_decoding(golden: Golden) -> None:
    codec, io, *_ = golden
    toks = io["output.toks"][:, :-3]  # leave a partial last block
    with torch.no_grad():
        ref = codec.toks_to_sig(toks)
    decoder = StreamDecoder(codec, 2)
    pieces = [decoder.decode(toks[:, a:b]) for a, b in _split(toks.shape[1], [3, 0, 5])]
    pieces.append(decoder.flush())
    assert max_abs(torch.cat(pieces, 1), ref) <= TOL
    assert decoder.pending == 0 and decoder.samples_out == ref.shape[1]


@pytest.mark.parametrize("golden", CAUSAL, indirect=True)
def test_streaming_voice_conversion_matches_golden(golden: Golden) -> None:
    codec, io, *_ = golden
    decoder = StreamDecoder(codec, 2, matching_set=io["output.matching_set"], topk=4)
    toks = io["output.toks"]
    pieces = [decoder.decode(toks[:, a:b]) for a, b in _split(toks.shape[1], [7])]
    pieces.append(decoder.flush())
    assert max_abs(torch.cat(pieces, 1), io["output.knn_sig"]) <= TOL


def test_sessions_side_by_side_do_not_share_state() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    a_sig, b_sig = io["input.sig"][:1], io["input.ref_sig"][:, :9000]
    with StreamingSession(codec) as a, StreamingSession(codec) as b:
        a_out, b_out = [], []
        for start in range(0, 9000, 1000):
            a_out.append(a.process(a_sig[:, start : start + 1000]))
            b_out.append(b.process(b_sig[:, start : start + 1000]))
        a_out.append(a.flush().sig)
        b_out.append(b.flush().sig)
    for sig, out in ((a_sig[:, :9000], a_out), (b_sig, b_out)):
        with StreamingSession(codec) as alone:
            ref = torch.cat([alone.process(sig), alone.flush().sig], 1)
        assert torch.equal(torch.cat(out, 1), ref)


def test_reset_starts_a_new_stream() -> None:
    codec, io, *_ = load_golden(CAUSAL[1])
    sig = io["input.sig"][:1, :6000]
    stream = StreamingSession(codec)
    first = torch.cat([stream.process(sig), stream.flush().sig], 1)
    with pytest.raises(StreamingError, match="after flush"):
        stream.encode(sig)
    stream.reset()
    assert stream.encoder.samples_in == 0 and stream.decoder.samples_out == 0
    second = torch.cat([stream.process(sig), stream.flush().sig], 1)
    assert torch.equal(first, second)
    assert first.shape[1] == 6000


def test_flush_of_one_direction_only() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    sig = io["input.sig"][:1, :5000]
    with StreamingSession(codec) as stream:
        toks = stream.encode(sig)
        tail = stream.flush()
    assert tail.sig.shape == (1, 0)
    with torch.no_grad():
        assert torch.equal(torch.cat([toks, tail.toks], 1), codec.sig_to_toks(sig))
    with StreamingSession(codec) as stream:
        out = stream.decode(io["output.toks"][:1, :6])
        tail = stream.flush()
    assert tail.toks.shape == (1, 0)
    assert out.shape[1] + tail.sig.shape[1] == 6 * 480


def test_inputs_accepted_as_numpy_and_1d() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    sig = io["input.sig"][0, :2560]
    encoder = StreamEncoder(codec)
    toks = encoder.encode(sig.numpy().astype(np.float64))
    assert toks.shape == (1, 8) and toks.dtype == torch.long
    with torch.no_grad():
        assert torch.equal(toks, codec.sig_to_toks(sig[None]))
    assert encoder.encode(np.zeros(0, np.float32)).shape == (1, 0)


def test_primitives_are_still_exported() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    toks, codes, state = encode_step(codec, io["input.sig"][:, :1280])
    assert isinstance(state, StreamState) and toks.shape == (2, 4)
    sig, state = decode_step(codec, codes, state)
    assert sig.shape == (2, 1920)


@pytest.mark.skipif(
    not hasattr(FocalCodec, "streaming"), reason="FocalCodec.streaming not added yet"
)
def test_codec_streaming_method() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    with codec.streaming(batch_size=2) as stream:
        assert isinstance(stream, StreamingSession)
        toks, _ = _stream(stream, io["input.sig"], [2000])
    assert torch.equal(toks, io["output.stream.toks"])


# -- misuse ----------------------------------------------------------------------------


def test_non_causal_model_is_refused() -> None:
    codec = load_golden("noncausal_vocos_50hz").codec
    with pytest.raises(StreamingError, match="not causal"):
        StreamingSession(codec)


def test_training_mode_is_refused(golden_dir) -> None:
    codec = FocalCodec.from_pretrained(golden_dir / CAUSAL[0]).train()
    with pytest.raises(StreamingError, match="eval"):
        StreamingSession(codec)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda s, x: s.encode(x[:2]), StreamingError, "batch_size=1"),
        (lambda s, x: s.encode(x[0], sample_rate=48000), StreamingError, "48000 Hz"),
        (lambda s, x: s.encode((x[0] * 1000).short()), AudioError, "floating point"),
        (lambda s, x: s.encode(x[0] * float("nan")), AudioError, "NaN"),
        (lambda s, x: s.encode(x[None]), AudioError, "shape"),
        (lambda s, x: s.decode(torch.tensor([[5000]])), InputError, r"\[0, 4096\)"),
        (lambda s, x: s.decode(torch.zeros(1, 3)), InputError, "integer"),
        (
            lambda s, x: s.decode(torch.zeros(2, 3, dtype=torch.long)),
            StreamingError,
            "rows",
        ),
    ],
)
def test_misuse_raises_a_clear_error(call, error, match) -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    with StreamingSession(codec) as stream:
        with pytest.raises(error, match=match) as info:
            call(stream, io["input.sig"])
    assert isinstance(info.value, FocalCodecError)
    assert "\n" not in str(info.value)


def test_closed_session_and_bad_options() -> None:
    codec, io, *_ = load_golden(CAUSAL[0])
    with StreamingSession(codec) as stream:
        pass
    with pytest.raises(StreamingError, match="closed"):
        stream.encode(io["input.sig"][0])
    with pytest.raises(StreamingError, match="closed"):
        stream.reset()
    with pytest.raises(StreamingError, match="pad"):
        StreamingSession(codec, pad="reflect")
    with pytest.raises(StreamingError, match="batch_size"):
        StreamingSession(codec, batch_size=0)
    with pytest.raises(InputError, match="matching_set"):
        StreamingSession(codec, matching_set=torch.zeros(10, 3))
    decoder = StreamDecoder(codec)
    with pytest.raises(InputError, match="shape") as info:
        decoder.decode(torch.zeros(1, 2, 3, dtype=torch.long))
    assert not isinstance(info.value, AudioError)  # tokens are not audio
    decoder.decode(io["output.toks"][:1, :8])
    with pytest.raises(StreamingError, match="already returned"):
        decoder.flush(output_length=10)
