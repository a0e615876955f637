"""Continuous batching: many streams stepped together, each equal to its solo stream.

References: a one-stream :class:`StreamingSession` per stream (the model's own state
layout, a different code path from the shared rows of ``streaming.rows``) fed the same
audio, and offline ``sig_to_toks``. Tokens must be identical, audio within ``TOL``.
The tiny golden models have attention windows of 16 and 20 frames (4 and 5 blocks), so
every stream here runs past its window, and streams that joined at different ticks step
together with caches of different fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focalcodec import FocalCodec
from focalcodec.deploy.fast import optimize
from focalcodec.errors import AudioError, InputError, StreamingError
from focalcodec.modules import kernels
from focalcodec.runtime import native_bf16
from focalcodec.streaming import StreamBatch
from focalcodec.streaming.session import StreamingSession
from support import CAUSAL, NONCAUSAL, load_golden, max_abs, speech

TOL = 1e-4
SPEECH = torch.from_numpy(speech())  # 2.09 s of real speech, 16 kHz
_INT8: dict[str, FocalCodec] = {}


@pytest.fixture(autouse=True)
def _row_invariant_products():
    # oneDNN and plain F.linear give each row of a product the same numbers whatever
    # the number of rows; the BLAS backend's few-row products do not (the weight on the
    # left), so there a batched stream equals its solo stream only to float rounding.
    with kernels.use("onednn" if "onednn" in kernels.available() else "plain"):
        yield


def _codec(case: str, mode: str) -> FocalCodec:
    codec = load_golden(case).codec
    if mode == "exact":
        return codec
    if case not in _INT8:
        _INT8[case] = optimize(codec, "int8")
    return _INT8[case]


@dataclass
class Plan:
    """One stream of a schedule: when it joins, its audio, the ticks it sits out."""

    join: int
    sig: torch.Tensor
    skip: set[int] = field(default_factory=set)
    matching_set: torch.Tensor | None = None


def _clip(start: int, length: int) -> torch.Tensor:
    return SPEECH[start : start + length].clone()


def _run(codec, plans: dict, pad: str = "none", max_ticks: int = 400) -> dict:
    """Run ``plans`` through one StreamBatch, resynthesising: key -> (toks, sig)."""
    batch = StreamBatch(codec)
    chunk = codec.chunk_size
    out = {key: ([], []) for key in plans}
    done = {key: 0 for key in plans}
    calls = []
    for tick in range(max_ticks):
        for key, plan in plans.items():
            if plan.join == tick:
                batch.open(key, matching_set=plan.matching_set)
        blocks = {}
        for key in batch.keys:
            plan, start = plans[key], done[key]
            if tick not in plan.skip and start + chunk <= plan.sig.shape[0]:
                blocks[key] = plan.sig[start : start + chunk]
                done[key] += chunk
        toks = batch.encode(blocks)
        sig = batch.decode(toks)
        calls.append(len(blocks))
        for key in toks:
            out[key][0].append(toks[key])
            out[key][1].append(sig[key])
        for key in batch.keys:
            plan = plans[key]
            if plan.sig.shape[0] - done[key] < chunk and tick not in plan.skip:
                tail = batch.flush(key, plan.sig[done[key] :], pad=pad)
                out[key][0].append(tail.toks)
                out[key][1].append(tail.sig)
        if tick > max(p.join for p in plans.values()) and not len(batch):
            break
    assert not len(batch), "every stream ended"
    return {key: (torch.cat(t), torch.cat(s)) for key, (t, s) in out.items()}


def _solo(codec, plan: Plan, pad: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    with StreamingSession(codec, matching_set=plan.matching_set, pad=pad) as session:
        toks = session.encode(plan.sig)
        sig = session.decode(toks)
        tail = session.flush()
    toks, sig = torch.cat([toks, tail.toks], 1)[0], torch.cat([sig, tail.sig], 1)[0]
    return toks.cpu(), sig.float().cpu()


def _check(codec, plans: dict, pad: str = "none") -> float:
    """Every stream equals its solo stream; returns the worst audio difference."""
    got = _run(codec, plans, pad)
    worst = 0.0
    for key, plan in plans.items():
        toks, sig = _solo(codec, plan, pad)
        assert torch.equal(got[key][0], toks), key
        assert got[key][1].shape == sig.shape, key
        worst = max(worst, max_abs(got[key][1], sig))
    assert worst <= TOL
    return worst


def _staggered(codec) -> dict:
    """Five streams: joins at ticks 0-7, lengths 6-22 blocks plus a partial block,
    each sitting out some ticks (so fills and row orders keep changing)."""
    chunk = codec.chunk_size
    plans = {}
    for i, (join, blocks, extra) in enumerate(
        [(0, 22, 517), (0, 9, 0), (2, 14, 1), (3, 6, 1279), (7, 12, 640)]
    ):
        sig = _clip(1500 * i, blocks * chunk + extra)
        plans[f"s{i}"] = Plan(join, sig, {t for t in range(40) if (t + i) % 4 == 3})
    return plans


@pytest.mark.parametrize("mode", ["exact", "int8"])
@pytest.mark.parametrize("case", CAUSAL)
def test_streams_joining_and_leaving_equal_their_solo_streams(case, mode) -> None:
    codec = _codec(case, mode)
    encoder = codec.config["encoder_config"]
    assert 22 * (1 + encoder["lookahead_size"]) > 4 * encoder["window_size"]  # wraps
    _check(codec, _staggered(codec))


@pytest.mark.parametrize("case", CAUSAL)
def test_batched_tokens_equal_offline_tokens(case) -> None:
    codec = _codec(case, "exact")
    plans = _staggered(codec)
    got = _run(codec, plans)
    for key, plan in plans.items():
        with torch.no_grad():
            ref = codec.sig_to_toks(plan.sig[None])[0]
        assert torch.equal(got[key][0], ref), key
        want = codec.output_length(plan.sig.shape[0])
        assert got[key][1].shape == (want,)


@pytest.mark.parametrize("pad", ["zeros", "edge"])
@pytest.mark.parametrize("case", CAUSAL)
def test_padded_tails_equal_solo(case, pad) -> None:
    _check(_codec(case, "exact"), _staggered(_codec(case, "exact")), pad)


@pytest.mark.parametrize("mode", ["exact", "int8"])
@pytest.mark.parametrize("case", CAUSAL)
def test_each_stream_converts_with_its_own_voice(case, mode) -> None:
    codec = _codec(case, mode)
    io = load_golden(case).io
    with torch.no_grad():
        other = codec.sig_to_feats(io["input.ref_sig"][:1])[0]
    voices = [io["output.matching_set"], None, other, io["output.matching_set"], None]
    plans = _staggered(codec)
    for plan, voice in zip(plans.values(), voices):
        plan.matching_set = voice
    _check(codec, plans)


def test_one_network_call_per_tick() -> None:
    codec = _codec(CAUSAL[0], "exact")
    calls = {"encoder": 0, "decoder": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1

        return hook

    handles = [
        codec.encoder.register_forward_hook(count("encoder")),
        codec.decoder.register_forward_hook(count("decoder")),
    ]
    try:
        batch = StreamBatch(codec)
        calls.update(encoder=0, decoder=0)
        for key in range(6):
            batch.open(key)
        chunk = codec.chunk_size
        for tick in range(8):
            toks = batch.encode(
                {k: _clip(300 * k + tick * chunk, chunk) for k in range(6)}
            )
            batch.decode(toks)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"encoder": 8, "decoder": 8}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(CAUSAL),
    streams=st.lists(
        st.tuples(
            st.integers(0, 6),  # join tick
            st.integers(0, 10),  # whole blocks
            st.integers(0, 1279),  # samples of a partial last block
            st.integers(0, 2**16),  # which ticks it sits out
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_any_join_leave_schedule_equals_solo(case, streams) -> None:
    codec = _codec(case, "exact")
    chunk = codec.chunk_size
    plans = {}
    for i, (join, blocks, extra, mask) in enumerate(streams):
        length = max(blocks * chunk + extra, codec.min_samples)
        skip = {t for t in range(16) if mask >> t & 1}
        plans[i] = Plan(join, _clip(997 * i, length), skip)
    _check(codec, plans)


@pytest.mark.parametrize("mode", ["exact", "int8"])
def test_state_of_continues_alone(mode) -> None:
    codec = _codec(CAUSAL[1], mode)
    chunk, batch = codec.chunk_size, StreamBatch(codec)
    sig = _clip(0, 14 * chunk)
    batch.open("a")
    batch.open("b")
    toks, out = [], []
    for t in range(9):
        blocks = {"a": sig[t * chunk : (t + 1) * chunk]}
        if t % 3:
            blocks["b"] = _clip(5000 + t * chunk, chunk)
        step = batch.encode(blocks)
        out.append(batch.decode(step)["a"])
        toks.append(step["a"])
    enc, dec = batch.state_of("a")
    with torch.inference_mode():
        for t in range(9, 14):
            step, _, enc = codec.encode_step(
                sig[None, t * chunk : (t + 1) * chunk], enc
            )
            toks.append(step[0])
            piece, dec = codec.decode_step(step, dec)
            out.append(piece[0])
    ref_toks, ref_sig = _solo(codec, Plan(0, sig))
    assert torch.equal(torch.cat(toks), ref_toks)
    assert max_abs(torch.cat(out), ref_sig) <= TOL


@pytest.mark.parametrize("case", CAUSAL)
def test_one_direction_streams(case) -> None:
    codec = _codec(case, "exact")
    chunk, block = codec.chunk_size, codec.chunk_tokens
    sig = _clip(2000, 9 * chunk + 700)
    with torch.no_grad():
        offline = codec.sig_to_toks(sig[None])
        ref_sig = codec.toks_to_sig(offline)[0]
    batch = StreamBatch(codec)
    batch.open("enc", decode=False)
    batch.open("dec", encode=False)
    toks, out = [], []
    for t in range(9):
        toks.append(batch.encode({"enc": sig[t * chunk : (t + 1) * chunk]})["enc"])
        out.append(
            batch.decode({"dec": offline[0, t * block : (t + 1) * block]})["dec"]
        )
    toks.append(batch.flush("enc", sig[9 * chunk :]).toks)
    tail = batch.flush("dec", toks=offline[0, 9 * block :])
    assert torch.equal(tail.toks, torch.zeros(0, dtype=torch.long))
    assert torch.equal(torch.cat(toks), offline[0])
    assert max_abs(torch.cat([*out, tail.sig]), ref_sig) <= TOL
    assert len(batch) == 0


def test_numpy_blocks_and_counts() -> None:
    codec = _codec(CAUSAL[0], "exact")
    batch = StreamBatch(codec, max_streams=2)
    batch.open(7)
    block = SPEECH[: codec.chunk_size].numpy()
    toks = batch.encode({7: block})[7]
    assert toks.dtype == torch.long and toks.shape == (codec.chunk_tokens,)
    sig = batch.decode({7: toks.numpy()})[7]
    assert sig.dtype == torch.float32
    assert sig.shape == (codec.chunk_tokens * codec.output_hop_length,)
    assert batch.counts(7) == {
        "samples_in": codec.chunk_size,
        "tokens_out": codec.chunk_tokens,
        "tokens_in": codec.chunk_tokens,
        "samples_out": sig.shape[0],
    }
    assert batch.encode({}) == {} and batch.keys == [7] and 7 in batch


def test_misuse_raises_clear_errors() -> None:
    codec = _codec(CAUSAL[0], "exact")
    chunk = codec.chunk_size
    batch = StreamBatch(codec, max_streams=2)
    batch.open("a")
    batch.open("e", decode=False)
    with pytest.raises(StreamingError, match="already open"):
        batch.open("a")
    assert batch.full
    with pytest.raises(StreamingError, match="max_streams=2"):
        batch.open("c")
    with pytest.raises(StreamingError, match="no open stream 'x'"):
        batch.encode({"x": SPEECH[:chunk]})
    with pytest.raises(AudioError, match=f"expected {chunk}"):
        batch.encode({"a": SPEECH[: chunk - 1]})
    with pytest.raises(AudioError, match="NaN"):
        batch.encode({"a": torch.full((chunk,), float("nan"))})
    with pytest.raises(AudioError, match="'a'.*a sample of 1e\\+30"):
        # A solo step refuses this only after its NaN has filled the state.
        batch.encode({"a": torch.full((chunk,), 1e30)})
    with pytest.raises(AudioError, match="divide by 32768"):
        batch.check_block("a", torch.full((chunk,), 32767.0))
    with pytest.raises(AudioError, match="1-D float"):
        batch.encode({"a": np.zeros(chunk, dtype=np.int16)})
    with pytest.raises(InputError, match=r"\[0, 4096\)"):
        batch.decode({"a": torch.full((codec.chunk_tokens,), 4096)})
    with pytest.raises(StreamingError, match="decode=False"):
        batch.decode({"e": torch.zeros(codec.chunk_tokens, dtype=torch.long)})
    with pytest.raises(StreamingError, match="pad must be"):
        batch.flush("a", pad="mirror")
    with pytest.raises(InputError, match="at most"):
        batch.flush("a", SPEECH[:100], toks=torch.zeros(99, dtype=torch.long))
    with pytest.raises(StreamingError, match="decode=False"):
        batch.flush("e", toks=torch.zeros(1, dtype=torch.long))
    # A refused tick leaves every stream as it was.
    toks = batch.encode({"a": SPEECH[:chunk]})["a"]
    ref, _ = _solo(codec, Plan(0, SPEECH[:chunk]))
    assert torch.equal(toks, ref)
    batch.close("a")
    batch.close("a")  # closing twice is fine
    assert batch.keys == ["e"] and not batch.full
    with pytest.raises(StreamingError, match="causal PyTorch model"):
        StreamBatch(load_golden(NONCAUSAL[0]).codec)


@pytest.mark.skipif(
    not native_bf16(torch.device("cpu")), reason="this CPU has no native bf16"
)
@pytest.mark.parametrize("case", CAUSAL)
def test_bf16_streams_equal_their_bf16_solo_streams(case) -> None:
    # The half-precision mode wraps each network in autocast; the shared state keeps
    # what the networks hand it, in bf16.
    codec = optimize(load_golden(case).codec, "bf16", device="cpu")
    _check(codec, _staggered(codec))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["exact", "bf16"])
@pytest.mark.parametrize("case", CAUSAL)
def test_batched_streams_on_a_gpu(case, mode) -> None:
    device = torch.device("cuda")
    if mode == "bf16" and not native_bf16(device):
        pytest.skip("this GPU has no native bf16")
    codec = optimize(load_golden(case).codec, mode, device="cuda")
    _check(codec, _staggered(codec))
