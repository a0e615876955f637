"""The ONNX Runtime backend as a stand-in for FocalCodec: same calls, same results.

Reference: the eager model (tests/test_golden.py ties it to the original package).
Tokens must be identical, audio within AUDIO_TOL (docs/deployment.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec.errors import AudioError, CheckpointError, InputError, StreamingError
from focalcodec.pipeline.compress import compress, decompress
from focalcodec.protocol import Codec
from focalcodec.streaming.session import StreamingSession
from focalcodec.streaming.steps import decode_step, encode_step
from support import AUDIO_TOL, exported, max_abs, without_stream_graphs
from support import CAUSAL as CAUSAL_CASES

ort = pytest.importorskip("onnxruntime")
from focalcodec.deploy.onnx_runtime import OnnxCodec  # noqa: E402

NONCAUSAL = "noncausal_vocos_12_5hz_legacy"
CAUSAL = "causal_vocos_25hz_postnorm"


@pytest.fixture
def pair(request, tmp_path_factory, golden_dir: Path):
    codec, out, _ = exported(tmp_path_factory, golden_dir, request.param)
    return codec, OnnxCodec(out, threads=1)


def _noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pair", [NONCAUSAL, CAUSAL], indirect=True)
def test_properties_match_the_model(pair) -> None:
    codec, runtime = pair
    for name in (
        "sample_rate_input",
        "sample_rate_output",
        "causal",
        "chunk_size",
        "latency",
        "token_rate",
        "codebook_size",
        "bits_per_token",
        "bitrate",
        "hop_length",
        "output_hop_length",
        "chunk_tokens",
        "device",
        "dtype",
        "training",
    ):
        assert getattr(runtime, name) == getattr(codec, name), name
    assert isinstance(runtime, Codec) and isinstance(codec, Codec)
    # The stand-in declares what it cannot do instead of faking nn.Module methods.
    assert not runtime.supports_partial_steps and not runtime.supports_knn
    for name in ("eval", "to", "parameters", "encoder", "compressor"):
        assert not hasattr(runtime, name), name
    assert runtime.config_hash() == codec.config_hash()
    assert runtime.config == codec.config
    assert runtime.info()["num_total_params"] == codec.info()["num_total_params"]


@pytest.mark.parametrize("pair", [NONCAUSAL, CAUSAL], indirect=True)
def test_offline_calls_match_the_model(pair) -> None:
    codec, runtime = pair
    sig = _noise(2, 11111)
    with torch.no_grad():
        toks = codec.sig_to_toks(sig)
        assert torch.equal(runtime.sig_to_toks(sig), toks)
        assert torch.equal(runtime.sig_to_codes(sig), codec.sig_to_codes(sig))
        assert torch.equal(runtime.toks_to_codes(toks), codec.toks_to_codes(toks))
        codes = codec.toks_to_codes(toks)
        assert torch.equal(runtime.codes_to_toks(codes), toks)
        ref = codec.toks_to_sig(toks, output_length=5000)
        assert max_abs(runtime.toks_to_sig(toks, output_length=5000), ref) <= AUDIO_TOL
        ref = codec.codes_to_sig(codes)
        assert max_abs(runtime.codes_to_sig(codes), ref) <= AUDIO_TOL
        assert max_abs(runtime.sig_to_sig(sig), codec.sig_to_sig(sig)) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [NONCAUSAL], indirect=True)
def test_numpy_in_numpy_out_and_1d_audio(pair) -> None:
    codec, runtime = pair
    sig = _noise(9000)
    toks = runtime.sig_to_toks(sig.numpy())
    assert isinstance(toks, np.ndarray) and toks.dtype == np.int64
    with torch.no_grad():
        assert np.array_equal(toks, codec.sig_to_toks(sig).numpy())
    out = runtime.toks_to_sig(toks)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


@pytest.mark.parametrize("pair", [NONCAUSAL, CAUSAL], indirect=True)
def test_relative_lengths_follow_the_model(pair) -> None:
    codec, runtime = pair
    sig = _noise(3, 16000, seed=1)
    length = torch.tensor([1.0, 0.55, 0.3])
    with torch.no_grad():
        toks = codec.sig_to_toks(sig, length)
        assert torch.equal(runtime.sig_to_toks(sig, length), toks)
        tok_length = torch.tensor([1.0, 0.5, 0.25])
        ref = codec.toks_to_sig(toks, length=tok_length)
    assert max_abs(runtime.toks_to_sig(toks, length=tok_length), ref) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_streaming_steps_match_the_model(pair) -> None:
    codec, runtime = pair
    sig = _noise(2, 10 * codec.chunk_size, seed=2)
    state = runtime_state = None
    for piece in sig.split(2 * codec.chunk_size, dim=1):
        with torch.no_grad():
            toks, codes, state = encode_step(codec, piece, state)
            out, state = decode_step(codec, codes, state)
        r_toks, r_codes, runtime_state = runtime.encode_step(piece, runtime_state)
        assert torch.equal(r_toks, toks) and torch.equal(r_codes, codes)
        r_out, runtime_state = runtime.decode_step(r_codes, runtime_state)
        assert max_abs(r_out, out) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_stream_equals_offline_on_whole_chunks(pair) -> None:
    codec, runtime = pair
    sig = _noise(1, 6 * codec.chunk_size, seed=3)
    toks, _, _ = runtime.encode_step(sig)
    out, _ = runtime.decode_step(toks)
    with torch.no_grad():
        assert torch.equal(toks, codec.sig_to_toks(sig))
        assert max_abs(out, codec.toks_to_sig(toks)) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_streaming_misuse_is_reported(pair) -> None:
    codec, runtime = pair
    with pytest.raises(StreamingError, match="whole chunks"):
        runtime.encode_step(_noise(1, codec.chunk_size + 7))
    _, _, state = runtime.encode_step(_noise(2, codec.chunk_size))
    with pytest.raises(StreamingError, match="batch size"):
        runtime.encode_step(_noise(1, codec.chunk_size), state)


@pytest.mark.parametrize("pair", [NONCAUSAL], indirect=True)
def test_bad_inputs_give_clear_errors(pair) -> None:
    _, runtime = pair
    with pytest.raises(AudioError, match="too short"):
        runtime.sig_to_toks(_noise(1, runtime.min_samples - 1))
    with pytest.raises(AudioError, match="floating point"):
        runtime.sig_to_toks(np.zeros((1, 4000), dtype=np.int16))
    with pytest.raises(AudioError, match="NaN"):
        runtime.sig_to_toks(np.full((1, 4000), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="lie in"):
        runtime.toks_to_sig(torch.tensor([[0, runtime.codebook_size]]))
    with pytest.raises(InputError, match="voice conversion"):
        runtime.toks_to_sig(torch.tensor([[0, 1]]), matching_set=torch.zeros(3, 64))
    with pytest.raises(StreamingError, match="no streaming graphs"):
        runtime.encode_step(_noise(1, runtime.chunk_size))
    with pytest.raises(StreamingError, match="not causal"):
        runtime.new_stream_state()


@pytest.mark.parametrize("pair", [NONCAUSAL], indirect=True)
def test_backend_is_a_drop_in_for_the_file_format(pair) -> None:
    codec, runtime = pair
    sig = _noise(12000, seed=4)
    with torch.no_grad():
        data = compress(sig, codec.sample_rate_input, codec)
        ref, rate = decompress(data, codec)
    assert compress(sig, codec.sample_rate_input, runtime) == data
    out, out_rate = decompress(data, runtime)
    assert out_rate == rate
    assert max_abs(out, ref) <= AUDIO_TOL


def test_unusable_directories_are_reported(
    tmp_path: Path, tmp_path_factory, golden_dir
):
    with pytest.raises(CheckpointError, match="no manifest.json"):
        OnnxCodec(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        OnnxCodec(tmp_path)
    _, out, manifest = exported(tmp_path_factory, golden_dir, NONCAUSAL)
    newer = dict(manifest, format_version=manifest["format_version"] + 1)
    (tmp_path / "manifest.json").write_text(json.dumps(newer))
    with pytest.raises(CheckpointError, match="re-export"):
        OnnxCodec(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="encoder graph is missing"):
        OnnxCodec(tmp_path)


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_raw_streaming_example_in_the_docs(pair) -> None:
    from support import REPO

    codec, runtime = pair
    text = (REPO / "docs" / "deployment.md").read_text()
    start = text.index("```python\nimport json")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    namespace: dict = {}
    exec(compile(code, "deployment.md", "exec"), namespace)
    sig = _noise(1, 5 * codec.chunk_size, seed=5)
    chunks = [p.numpy() for p in sig.split(codec.chunk_size, dim=1)]
    out = np.concatenate(list(namespace["run_stream"](runtime.directory, chunks)), 1)
    toks, _, _ = runtime.encode_step(sig)
    ref, _ = runtime.decode_step(toks)
    assert max_abs(torch.from_numpy(out), ref) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [NONCAUSAL], indirect=True)
def test_too_short_item_in_a_batch_is_an_audio_error(pair) -> None:
    _, runtime = pair
    sig = _noise(2, 2 * runtime.min_samples)
    with pytest.raises(AudioError, match="too short"):
        runtime.sig_to_toks(sig, torch.tensor([1.0, 0.3]))


# -- StreamingSession over the export ---------------------------------------------------


def _session_run(codec, sig: torch.Tensor, piece: int, **options):
    """Stream ``sig`` in pieces of ``piece`` samples: all tokens and all audio."""
    toks, out = [], []
    with StreamingSession(codec, sig.shape[0], **options) as stream:
        for part in sig.split(piece, dim=1):
            toks.append(stream.encode(part))
            out.append(stream.decode(toks[-1]))
        tail = stream.flush()
    return torch.cat([*toks, tail.toks], 1), torch.cat([*out, tail.sig], 1)


@pytest.mark.parametrize("pair", CAUSAL_CASES, indirect=True)
@pytest.mark.parametrize("pad, steps", [("zeros", 1), ("edge", 3)])
def test_session_over_the_export_matches_the_torch_session(pair, pad, steps) -> None:
    codec, runtime = pair
    # 700-sample pieces never line up with the blocks; the last block is partial.
    sig = _noise(2, 7 * codec.chunk_size + 333, seed=6)
    options = dict(pad=pad, chunks_per_step=steps)
    ref_toks, ref_sig = _session_run(codec, sig, 700, **options)
    toks, out = _session_run(runtime, sig, 700, **options)
    assert ref_toks.shape[1] == 8 * runtime.chunk_tokens
    assert torch.equal(toks, ref_toks)
    rate = codec.sample_rate_output / codec.sample_rate_input
    assert out.shape[1] == int(sig.shape[1] * rate)
    assert max_abs(out, ref_sig) <= AUDIO_TOL


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_session_over_the_export_restarts_cleanly(pair) -> None:
    codec, runtime = pair
    sig = _noise(1, 3 * codec.chunk_size, seed=7)
    session = StreamingSession(runtime, pad="zeros")
    first = torch.cat([session.process(sig), session.flush().sig], 1)
    session.reset()
    again = torch.cat([session.process(sig), session.flush().sig], 1)
    assert torch.equal(first, again)


@pytest.mark.parametrize("pair", [CAUSAL], indirect=True)
def test_session_over_the_export_refuses_what_it_cannot_do(pair, tmp_path) -> None:
    codec, runtime = pair
    with pytest.raises(StreamingError, match="pad='zeros'"):
        StreamingSession(runtime)  # pad="none" needs a partial last block
    dim = codec.config["decompressor_config"]["output_dim"]
    with pytest.raises(StreamingError, match="voice conversion"):
        StreamingSession(runtime, pad="zeros", matching_set=torch.zeros(5, dim))
    session = StreamingSession(runtime, pad="zeros")
    session.decode(torch.zeros(1, runtime.chunk_tokens + 1, dtype=torch.long))
    with pytest.raises(StreamingError, match="whole blocks"):
        session.flush()
    no_steps = OnnxCodec(without_stream_graphs(runtime.directory, tmp_path))
    with pytest.raises(StreamingError, match="no streaming graphs"):
        StreamingSession(no_steps, pad="zeros")


@pytest.mark.parametrize("pair", [NONCAUSAL], indirect=True)
def test_session_over_a_non_causal_export_is_refused(pair) -> None:
    _, runtime = pair
    with pytest.raises(StreamingError, match="not causal"):
        StreamingSession(runtime, pad="zeros")
