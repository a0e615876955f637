"""Long inputs in windows: the window plan, the cross-fade, and parity where it is exact.

Exact references: one window covering the whole input is whole-input processing; causal
models go through the stream, which equals offline processing; overlapping pieces of one
known sequence must cross-fade back into that sequence; ``decode_long`` is its windows,
each decoded on its own, weighted by linear ramps written out here. How close the
non-causal windowed result is to whole-input processing is a measurement
(benchmarks/longform_bound.py, docs/streaming.md), held here as a bound.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcodec.errors import AudioError, InputError
from focalcodec.streaming.longform import (
    AudioFileSignal,
    _crossfade,
    _window_slices,
    decode_long,
    encode_long,
    iter_decode_long,
    plan_windows,
    sig_to_sig_long,
)
from support import CAUSAL, NONCAUSAL, Golden, load_golden, max_abs, snr_db, speech

TOL = 1e-4
# benchmarks/results/longform_bound.json: 15 s of real speech, 4 s windows with 1 s of
# overlap, against whole-input processing. Measured (tokens identical, bits identical,
# decode-only SNR, round-trip SNR): 50 Hz 83.8 %, 98.17 %, 81.6 dB, 22.1 dB; 12.5 Hz
# 68.1 %, 96.93 %, 68.1 dB, 14.2 dB. The bounds leave room for float rounding only.
LONG_CLIP = "librispeech/test-other/1688/1688-142285-0000.flac"
BOUNDS = {
    "noncausal_vocos_50hz": (0.83, 0.978, 80.5, 21.0),
    "noncausal_vocos_12_5hz_legacy": (0.67, 0.965, 67.0, 13.2),
}


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 400),
    chunk=st.integers(1, 60),
    overlap=st.integers(0, 20),
)
def test_plan_covers_every_token_once(total, chunk, overlap) -> None:
    windows = plan_windows(total, chunk, overlap)
    assert windows[0].core_start == 0 and windows[-1].core_stop == total
    for prev, nxt in zip(windows, windows[1:]):
        assert prev.core_stop == nxt.core_start
    for w in windows:
        assert 0 <= w.start <= w.core_start < w.core_stop <= w.stop <= total
        assert w.core_start - w.start == min(overlap, w.core_start)
        assert w.stop - w.core_stop == min(overlap, total - w.core_stop)
    if len(windows) > 1:  # no sliver at the end
        assert windows[-1].core_stop - windows[-1].core_start >= max(overlap, 1)


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(5, 300),
    chunk=st.integers(4, 50),
    overlap=st.integers(2, 12),
    unit=st.sampled_from([1, 3]),
)
def test_crossfade_of_consistent_pieces_is_the_sequence(
    total, chunk, overlap, unit
) -> None:
    # Windows cut from one sequence agree on their overlaps, so fading them together
    # must give the sequence back, whatever the plan.
    seq = torch.randn(2, total * unit, 3, dtype=torch.float64)
    windows = plan_windows(total, chunk, overlap)
    fade = min(overlap, chunk) * unit  # as the library clamps it
    pieces = (
        (seq[:, w.start * unit : w.stop * unit][:, lo:hi], last)
        for w, lo, hi, last in _window_slices(windows, fade, unit)
    )
    out = torch.cat(list(_crossfade(pieces, fade)), 1)
    assert torch.allclose(out, seq, atol=1e-12)


def test_crossfade_weights_sum_to_one() -> None:
    a, b = torch.ones(1, 10), torch.full((1, 10), 3.0)
    out = torch.cat(list(_crossfade([(a, False), (b, True)], 4)), 1)
    assert out.shape == (1, 16)
    ramp = torch.tensor([0.125, 0.375, 0.625, 0.875])
    assert torch.allclose(out[0, 6:10], 1 + 2 * ramp)
    assert torch.all(out[0, :6] == 1) and torch.all(out[0, 10:] == 3)


@pytest.mark.parametrize("golden", NONCAUSAL, indirect=True)
def test_one_window_is_whole_input_processing(golden: Golden) -> None:
    codec, io, *_ = golden
    sig = io["input.sig"][:1, :-333]
    with torch.no_grad():
        ref_toks = codec.sig_to_toks(sig)
        ref_sig = codec.toks_to_sig(ref_toks)
    toks = encode_long(codec, sig, chunk_seconds=60, overlap_seconds=1)
    assert torch.equal(toks, ref_toks)
    out = decode_long(codec, toks, chunk_seconds=60, overlap_seconds=1)
    assert max_abs(out, ref_sig) <= TOL


@pytest.mark.parametrize("golden", NONCAUSAL, indirect=True)
@pytest.mark.parametrize("crossfade", [True, False])
def test_windows_give_whole_input_lengths(golden: Golden, crossfade) -> None:
    codec, io, *_ = golden
    sig = io["input.sig"][:, :-333]  # several windows, an uneven end
    with torch.no_grad():
        ref_toks = codec.sig_to_toks(sig)
    toks = encode_long(codec, sig, 0.4, 0.16, crossfade=crossfade)
    assert toks.shape == ref_toks.shape and toks.dtype == torch.long
    assert 0 <= int(toks.min()) and int(toks.max()) < codec.codebook_size
    out = decode_long(codec, ref_toks, 0.4, 0.16)
    assert out.shape == codec.toks_to_sig(ref_toks).shape
    resynth = sig_to_sig_long(codec, sig, 0.4, 0.16)
    assert resynth.shape == (2, sig.shape[1])


@pytest.mark.parametrize("golden", CAUSAL, indirect=True)
def test_causal_models_are_exact(golden: Golden) -> None:
    codec, io, *_ = golden
    sig = io["input.sig"][:, :-333]
    with torch.no_grad():
        ref = codec.forward(sig)
    toks = encode_long(codec, sig, chunk_seconds=0.2)
    assert torch.equal(toks, ref.toks)
    out = sig_to_sig_long(codec, sig, chunk_seconds=0.2)
    assert max_abs(out, ref.sig) <= TOL


def test_iter_decode_long_pieces_and_output_length() -> None:
    codec, io, *_ = load_golden("noncausal_vocos_50hz")
    toks = io["output.toks"][:1]
    whole = decode_long(codec, toks, 0.4, 0.1)
    pieces = list(iter_decode_long(codec, toks, 0.4, 0.1))
    assert len(pieces) > 1
    assert torch.equal(torch.cat(pieces, 1), whole)
    short = decode_long(codec, toks, 0.4, 0.1, output_length=1000)
    assert torch.equal(short, whole[:, :1000])
    longer = decode_long(codec, toks, 0.4, 0.1, output_length=whole.shape[1] + 7)
    assert torch.equal(longer[:, -8:], whole[:, -1:].expand(-1, 8))


def test_lazy_file_signal_matches_in_memory(tmp_path) -> None:
    codec, io, *_ = load_golden("noncausal_vocos_50hz")
    sig = io["input.sig"][0].numpy() * 0.5
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([sig, sig], 1), 16000, subtype="FLOAT")
    lazy = AudioFileSignal(path)
    assert lazy.shape == (1, len(sig)) and lazy.sample_rate == 16000
    np.testing.assert_array_equal(lazy[:, 100:900][0], sig[100:900])
    assert torch.equal(
        encode_long(codec, lazy, 0.4, 0.1), encode_long(codec, sig, 0.4, 0.1)
    )


def test_bad_arguments(tmp_path) -> None:
    codec, io, *_ = load_golden("noncausal_vocos_50hz")
    sig = io["input.sig"][:1]
    with pytest.raises(InputError, match="shorter than chunk_seconds"):
        encode_long(codec, sig, 1.0, 1.0)
    with pytest.raises(InputError, match="chunk_seconds must be > 0"):
        encode_long(codec, sig, 0.0, 0.0)
    with pytest.raises(AudioError, match="shape"):
        encode_long(codec, sig[None])
    with pytest.raises(InputError, match="tokens must lie"):
        decode_long(codec, torch.tensor([[codec.codebook_size]]))
    with pytest.raises(InputError, match="no tokens"):
        decode_long(codec, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(AudioError, match="cannot read"):
        AudioFileSignal(tmp_path / "missing.wav")
    sf.write(tmp_path / "48k.wav", np.zeros(4800, np.float32), 48000)
    with pytest.raises(AudioError, match="48000 Hz"):
        encode_long(codec, AudioFileSignal(tmp_path / "48k.wav"))


def _faded_windows(codec, toks, chunk_seconds, overlap_seconds) -> torch.Tensor:
    """decode_long written out: each window decoded alone, times its linear ramps.

    A window's weight is 1 over its core, rises from 0 to 1 over the ``overlap`` tokens
    centred on its left boundary and falls over those centred on its right one; the
    weights of neighbours sum to one.
    """
    rate = codec.token_rate
    chunk, overlap = round(chunk_seconds * rate), round(overlap_seconds * rate)
    per = round(codec.sample_rate_output / rate)
    fade = min(chunk, overlap) * per
    windows = plan_windows(toks.shape[1], chunk, overlap)
    out = torch.zeros(toks.shape[0], toks.shape[1] * per, dtype=torch.float64)
    ramp = (torch.arange(fade, dtype=torch.float64) + 0.5) / fade
    for k, w in enumerate(windows):
        with torch.no_grad():
            sig = codec.toks_to_sig(toks[:, w.start : w.stop])
        weight = torch.ones(sig.shape[1], dtype=torch.float64)
        if k > 0:  # rise around the left boundary, nothing before it
            a = (w.core_start - w.start) * per - fade // 2
            weight[:a] = 0
            weight[a : a + fade] = ramp
        if k < len(windows) - 1:  # fall around the right boundary, nothing after it
            b = (w.core_stop - w.start) * per - fade // 2
            weight[b : b + fade] = 1 - ramp
            weight[b + fade :] = 0
        out[:, w.start * per : w.stop * per] += sig.double() * weight
    return out


@pytest.mark.parametrize("golden", NONCAUSAL, indirect=True)
@pytest.mark.parametrize("plan", [(0.4, 0.1), (0.5, 0.14), (0.3, 0.28)])
def test_decode_long_is_its_windows_cross_faded(golden: Golden, plan) -> None:
    codec, io, *_ = golden
    toks = io["output.toks"]
    out = decode_long(codec, toks, *plan)
    expected = _faded_windows(codec, toks, *plan)
    assert (
        len(plan_windows(toks.shape[1], *(round(p * codec.token_rate) for p in plan)))
        > 1
    )
    assert out.shape == expected.shape
    assert max_abs(out, expected) <= 1e-6


@pytest.mark.parametrize("golden", NONCAUSAL, indirect=True)
def test_windows_stay_within_the_measured_bound(golden: Golden) -> None:
    """Windowed against whole-input processing on 15 s of real speech (4 s windows)."""
    codec, *_ = golden
    sig = torch.from_numpy(speech(LONG_CLIP))[None]
    plan = (4.0, 1.0)
    with torch.no_grad():
        toks = codec.sig_to_toks(sig)
        whole_sig = codec.sig_to_sig(sig)
        whole_from_toks = codec.toks_to_sig(toks)
        windowed = encode_long(codec, sig, *plan)
        same_bits = float(
            ((codec.toks_to_codes(windowed) > 0) == (codec.toks_to_codes(toks) > 0))
            .float()
            .mean()
        )
    assert (
        len(plan_windows(toks.shape[1], *(round(p * codec.token_rate) for p in plan)))
        == 4
    )
    same_toks = float((windowed == toks).float().mean())
    decode_snr = snr_db(whole_from_toks, decode_long(codec, toks, *plan))
    round_trip = snr_db(whole_sig, sig_to_sig_long(codec, sig, *plan))
    min_toks, min_bits, min_decode, min_round_trip = BOUNDS[golden.name]
    assert same_toks >= min_toks and same_toks < 1  # windows do change some tokens
    assert same_bits >= min_bits
    assert decode_snr >= min_decode
    assert round_trip >= min_round_trip
