"""Batched tokenization: buckets, the audio loader, padded encoding that stays
batch-invariant (each item gets its solo tokens), long items, bf16 on GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.errors import AudioError, InputError
from focalcodec.files.audio import load_audio
from focalcodec.files.manifest import scan
from focalcodec.pipeline.loader import AudioDataset, audio_loader, plan_buckets
from focalcodec.tokens.dataset import TokenDataset

# The agreement documented in docs/tokenize.md (real speech, full-size models).
DOCUMENTED_AGREEMENT = 0.999
MODELS = [
    "noncausal_vocos_50hz",
    "noncausal_vocos_12_5hz_legacy",  # downscaling compressor
    "causal_wavenext_50hz",
    "causal_vocos_25hz_postnorm",
]


@pytest.fixture(scope="module")
def speech(data_dir) -> list[torch.Tensor]:
    """The 15 clips of tests/data/audio at 16 kHz (1.3 to 15 s, 4 languages, noisy)."""
    entries = scan(data_dir / "audio" / "manifest.jsonl")
    return [torch.from_numpy(load_audio(e.path, 16000).sig) for e in entries]


def padded(sigs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sigs)
    batch = torch.stack([F.pad(s, (0, longest - len(s))) for s in sigs])
    return batch, torch.tensor([len(s) for s in sigs])


@pytest.mark.parametrize("case", MODELS)
def test_padded_batch_gives_solo_tokens(golden_dir, speech, case):
    codec = FocalCodec.from_pretrained(golden_dir / case).eval()
    same = total = 0
    with torch.inference_mode():
        for bucket in plan_buckets([len(s) for s in speech], 16000 * 40):
            batch, lengths = padded([speech[i] for i in bucket])
            toks, counts = codec.sig_to_toks_padded(batch, lengths)
            assert toks.shape == (len(bucket), int(counts.max()))
            for row, i in enumerate(bucket):
                solo = codec.sig_to_toks(speech[i][None])[0]
                assert int(counts[row]) == len(solo)
                assert not toks[row, len(solo) :].any()  # zeros past the end
                same += int((toks[row, : len(solo)] == solo).sum())
                total += len(solo)
    assert total > 1000 and same / total >= DOCUMENTED_AGREEMENT


@pytest.mark.parametrize(
    "case", ["noncausal_vocos_12_5hz_legacy", "causal_wavenext_50hz"]
)
def test_without_masks_padding_changes_tokens(golden_dir, speech, case):
    """The masks are what makes the batch invariant: a plain padded batch differs."""
    codec = FocalCodec.from_pretrained(golden_dir / case).eval()
    short, longest = min(speech, key=len), max(speech, key=len)
    batch, lengths = padded([short, longest])
    with torch.inference_mode():
        solo = codec.sig_to_toks(short[None])[0]
        plain = codec.sig_to_toks(batch)[0, : len(solo)]
        masked, _ = codec.sig_to_toks_padded(batch, lengths)
    assert torch.equal(masked[0, : len(solo)], solo)
    assert not torch.equal(plain, solo)


def test_padded_lengths_are_checked(golden_dir):
    codec = FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz")
    sig = torch.zeros(2, 4000)
    with pytest.raises(InputError, match="2 integer"):
        codec.sig_to_toks_padded(sig, [4000])
    with pytest.raises(InputError, match="integer"):
        codec.sig_to_toks_padded(sig, torch.tensor([0.5, 1.0]))
    with pytest.raises(InputError, match="lie in"):
        codec.sig_to_toks_padded(sig, [4000, 4001])
    with pytest.raises(InputError, match="lie in"):
        codec.sig_to_toks_padded(sig, [4000, 100])


def test_plan_buckets_respects_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1000, size=200).tolist() + [5000]
    buckets = plan_buckets(lengths, 3000, max_items=8)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    assert buckets[0] == [200]  # longer than the budget: alone, first
    for bucket in buckets:
        padded_size = len(bucket) * max(lengths[i] for i in bucket)
        assert len(bucket) == 1 or padded_size <= 3000
        assert len(bucket) <= 8
    firsts = [lengths[b[0]] for b in buckets]
    assert firsts == sorted(firsts, reverse=True)  # longest first
    # Similar lengths share buckets: little padding overall.
    waste = sum(len(b) * max(lengths[i] for i in b) for b in buckets) / sum(lengths)
    assert waste < 1.3


def test_loader_decodes_in_workers_and_reports_bad_files(tmp_path, data_dir):
    entries = scan(data_dir / "audio" / "manifest.jsonl")[:4]
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio")
    paths = [e.path for e in entries] + [
        bad,
        data_dir / "audio" / "noisy" / "p257_003.flac",
    ]
    dataset = AudioDataset(paths, 16000, min_samples=320)
    batches = list(audio_loader(dataset, [[0, 1, 4], [2, 3], [5]], workers=2))
    assert [b.indices for b in batches] == [[0, 1], [2, 3], [5]]
    assert (
        isinstance(batches[0].errors[0][1], AudioError) and batches[0].errors[0][0] == 4
    )
    for batch in batches:
        for row, i in enumerate(batch.indices):
            sig = load_audio(paths[i], 16000).sig  # 48 kHz noisy file: resampled
            n = int(batch.lengths[row])
            assert n == len(sig) and batch.sig.shape[1] == batch.lengths.max()
            np.testing.assert_array_equal(batch.sig[row, :n].numpy(), sig)
            assert not batch.sig[row, n:].any()


def test_long_items_are_encoded_in_windows(tmp_path, data_dir, golden_dir):
    """Items over --long-seconds take the long-form path; for a causal model that is
    a stream, which gives the offline tokens exactly."""
    manifest = data_dir / "audio" / "manifest.jsonl"
    model = str(golden_dir / "causal_wavenext_50hz")
    out, ref = tmp_path / "long", tmp_path / "ref"
    common = ["-m", model, "-q", "--exact"]
    assert (
        main(
            ["tokenize", str(manifest), "-o", str(out), "--long-seconds", "4", *common]
        )
        == 0
    )
    assert main(["tokenize", str(manifest), "-o", str(ref), *common]) == 0
    durations = [json.loads(x)["duration"] for x in manifest.read_text().splitlines()]
    assert sum(d > 4 for d in durations) >= 5
    for a, b in zip(TokenDataset(out), TokenDataset(ref), strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])


@pytest.mark.gpu
def test_bf16_on_gpu_agrees_with_fp32(tmp_path, data_dir, golden_dir):
    manifest = data_dir / "audio" / "manifest.jsonl"
    model = str(golden_dir / "noncausal_vocos_50hz")
    outs = {}
    for precision in ("fp32", "bf16"):
        outs[precision] = tmp_path / precision
        args = ["tokenize", str(manifest), "-o", str(outs[precision]), "-m", model,
                "-q", "--device", "cuda", "--precision", precision]  # fmt: skip
        assert main(args) == 0
    same = total = 0
    for a, b in zip(TokenDataset(outs["fp32"]), TokenDataset(outs["bf16"])):
        same += int((a["tokens"] == b["tokens"]).sum())
        total += len(a["tokens"])
    assert same / total > 0.9  # bf16 moves latents near zero across the sign
