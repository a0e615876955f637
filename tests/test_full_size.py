"""The real sizes: one full-size model per architecture family, random weights, real speech.

The golden cases are tiny; these are the released architectures (`FocalCodec.from_config`,
seeded random weights: nothing to download) on 2-3 s of real speech from tests/data:
non-causal 50 Hz (Vocos), non-causal 12.5 Hz (downsampling focal networks) and causal
50 Hz (WaveNeXt, 24 kHz out). References are independent of the batch and streaming code:
each item encoded on its own, the architecture's frame arithmetic, the README's table.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.streaming.session import StreamingSession
from support import max_abs, speech

# name -> (token rate, codebook size, output rate), as in the README's model table
FAMILIES = {
    "focalcodec_50hz": (50.0, 8192, 16000),
    "focalcodec_12_5hz": (12.5, 8192, 16000),
    "focalcodec_50hz_4k_causal": (50.0, 4096, 24000),
}
LONG = speech("librispeech/dev-clean/84/84-121123-0001.flac", seconds=3.0)
SHORT = speech("multilingual/es/conf-hasleft.flac", seconds=2.0)
HOP = 320  # WavLM's front-end: 400-sample frames every 320 (SPEC sections 1.1, 2.3)
STREAM_AUDIO_TOL = 1e-4  # docs/streaming.md: audio equals offline decoding within 1e-4


@pytest.fixture(scope="module", params=list(FAMILIES))
def codec(request) -> FocalCodec:
    torch.manual_seed(0)
    return FocalCodec.from_config(request.param).eval()


def expected_tokens(name: str, samples: int) -> int:
    """Tokens for ``samples`` of input, from the architecture's frame arithmetic."""
    if name.endswith("causal"):
        return -(-samples // HOP)  # causal front-end: left padding, a frame per hop
    frames = (samples - 400) // HOP + 1  # no padding: whole 400-sample windows only
    down = round(50 / FAMILIES[name][0])  # the compressor's downsampling
    return -(-frames // down)


@torch.inference_mode()
def test_rates_and_lengths(codec: FocalCodec) -> None:
    name = codec.model_id
    token_rate, codebook, rate_out = FAMILIES[name]
    assert (codec.token_rate, codec.codebook_size) == (token_rate, codebook)
    assert (codec.sample_rate_input, codec.sample_rate_output) == (16000, rate_out)
    for sig in (LONG, LONG[:37011]):  # 3 s, and an uneven 2.31 s
        x = torch.from_numpy(sig)[None]
        toks, _, rec = codec.forward(x)
        assert toks.shape == (1, expected_tokens(name, len(sig))), len(sig)
        assert toks.dtype == torch.int64
        assert 0 <= int(toks.min()) and int(toks.max()) < codebook
        assert len(torch.unique(toks)) > toks.shape[1] // 5  # not a constant code
        assert rec.shape == (1, len(sig) * rate_out // 16000)
        assert torch.isfinite(rec).all() and float(rec.abs().max()) > 0
    out = codec.toks_to_sig(toks)  # no output length: whole tokens
    assert out.shape == (1, toks.shape[1] * round(rate_out / token_rate))


@torch.inference_mode()
def test_padded_batch_items_equal_solo_items(codec: FocalCodec) -> None:
    n = len(LONG)
    batch = torch.zeros(2, n)
    batch[0] = torch.from_numpy(LONG)
    batch[1, : len(SHORT)] = torch.from_numpy(SHORT)
    length = torch.tensor([1.0, len(SHORT) / n])
    toks = codec.sig_to_toks(batch, length=length)
    solo = [codec.sig_to_toks(torch.from_numpy(s)[None])[0] for s in (LONG, SHORT)]
    for i, ref in enumerate(solo):
        assert torch.equal(toks[i, : len(ref)], ref), f"item {i}"
        assert not toks[i, len(ref) :].any(), "positions past the end are zeros"
    steps = torch.tensor([len(ref) for ref in solo])
    audio = codec.toks_to_sig(toks, length=steps / toks.shape[1])
    for i, ref in enumerate(solo):
        alone = codec.toks_to_sig(ref[None])[0]
        assert torch.equal(audio[i, : len(alone)], alone), f"item {i}"
        assert not audio[i, len(alone) :].any()


@pytest.mark.parametrize("codec", ["focalcodec_50hz_4k_causal"], indirect=True)
@torch.inference_mode()
def test_streamed_tokens_equal_offline_tokens(codec: FocalCodec) -> None:
    x = torch.from_numpy(LONG[:32000])[None]  # 2 s: 25 blocks of 80 ms
    offline = codec.forward(x)
    lats = codec.sig_to_lats(x)
    toks, audio = [], []
    with StreamingSession(codec) as stream:
        for piece in x.split(700, dim=1):  # pieces that straddle the blocks
            toks.append(stream.encode(piece))
            audio.append(stream.decode(toks[-1]))
        tail = stream.flush()
    toks = torch.cat([*toks, tail.toks], 1)
    audio = torch.cat([*audio, tail.sig], 1)
    # Identical tokens, except where a latent is so close to zero that its sign is a
    # float-rounding tie (docs/streaming.md measures how rare that is).
    differ = (codec.toks_to_codes(toks) > 0) != (offline.codes > 0)
    ties = lats.abs()[differ]
    assert ties.numel() == 0 or float(ties.max()) < 1e-5, ties
    assert int((toks != offline.toks).sum()) <= 1
    assert audio.shape == offline.sig.shape == (1, 48000)
    if torch.equal(toks, offline.toks):
        assert max_abs(audio, offline.sig) <= STREAM_AUDIO_TOL
    print(
        f"{codec.model_id}: {int((toks != offline.toks).sum())} of {toks.shape[1]} "
        f"tokens differ; audio max error {max_abs(audio, offline.sig):.2e}; "
        f"smallest |latent| {float(lats.abs().min()):.2e}"
    )
    assert np.isfinite(audio.numpy()).all()
