"""The FocalCodec facade: input checking, properties, batch invariance, kNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from focalcodec import AudioError, FocalCodec, InputError


@pytest.fixture(scope="module")
def codec(golden_dir) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz").eval()


@pytest.mark.parametrize(
    ("sig", "match"),
    [
        (torch.zeros(1, 2, 4000), "shape"),
        (torch.zeros(1, 0), "too short"),
        (torch.zeros(1, 100), "too short"),
        (torch.zeros(1, 4000, dtype=torch.int16), "floating point"),
        (torch.full((1, 4000), float("nan")), "NaN"),
        (torch.full((1, 4000), float("inf")), "NaN or infinite"),
        ([0.0] * 4000, "tensor or numpy"),
    ],
)
def test_bad_audio_gives_clear_error(codec: FocalCodec, sig, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        codec.sig_to_toks(sig)


def test_one_dimensional_and_numpy_input(codec: FocalCodec) -> None:
    sig = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        ref = codec.sig_to_toks(sig[None])
        assert torch.equal(codec.sig_to_toks(sig), ref)
        assert torch.equal(codec.sig_to_toks(sig.double().numpy()), ref)


def test_bad_tokens_and_lengths(codec: FocalCodec) -> None:
    with pytest.raises(InputError, match=r"\[0, 1024\)"):
        codec.toks_to_sig(torch.tensor([[0, 1024]]))
    with pytest.raises(InputError, match="integer"):
        codec.toks_to_sig(torch.zeros(1, 3))
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        codec.sig_to_toks(torch.zeros(2, 4000), length=torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match="2 entries"):
        codec.sig_to_toks(torch.zeros(2, 4000), length=torch.tensor([1.0]))
    with pytest.raises(InputError, match="matching_set"):
        codec.toks_to_sig(
            torch.zeros(1, 3, dtype=torch.long), matching_set=torch.zeros(5, 3)
        )


def test_properties(codec: FocalCodec) -> None:
    assert codec.sample_rate == 16000
    assert codec.token_rate == 50.0 and codec.bits_per_token == 10
    assert codec.bitrate == 500.0 and codec.latency is None
    book = codec.codebook
    assert book.shape == (1024, 10)
    assert torch.equal(codec.codes_to_toks(book), torch.arange(1024))


def test_sample_rate_raises_when_rates_differ(golden_dir) -> None:
    model = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz")
    assert model.sample_rate_output == 24000
    with pytest.raises(RuntimeError, match="sample_rate_output"):
        _ = model.sample_rate


@torch.no_grad()
def test_batch_invariance_random_lengths(codec: FocalCodec) -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = [4000, 6123, 9000, 9000]
    total = max(lengths)
    sig = torch.zeros(len(lengths), total)
    for i, n in enumerate(lengths):
        sig[i, :n] = torch.randn(n, generator=gen) * 0.1
    rel = torch.tensor(lengths, dtype=torch.float32) / total
    batch = codec.sig_to_toks(sig, length=rel)
    for i, n in enumerate(lengths):
        alone = codec.sig_to_toks(sig[i : i + 1, :n])[0]
        assert torch.equal(batch[i, : alone.shape[0]], alone)


@torch.no_grad()
def test_output_length_trims_and_replicates(codec: FocalCodec) -> None:
    toks = torch.randint(0, 1024, (1, 10), generator=torch.Generator().manual_seed(2))
    full = codec.toks_to_sig(toks)
    assert full.shape == (1, 3200)
    assert torch.equal(codec.toks_to_sig(toks, output_length=3000), full[:, :3000])
    longer = codec.toks_to_sig(toks, output_length=3300)
    assert torch.equal(longer[:, :3200], full)
    assert torch.all(longer[:, 3200:] == full[:, -1:])


def test_knn_finds_exact_members() -> None:
    from focalcodec.modules.knn import knn

    gen = torch.Generator().manual_seed(3)
    bank = torch.randn(50, 8, generator=gen)
    queries = bank[[4, 17, 33]] * 2.5  # same direction: cosine distance 0
    for splits in (1, 4, 7):
        out = knn(queries, bank, topk=1, num_splits=splits)
        assert out.shape == (3, 1, 8)
        assert torch.allclose(out[:, 0], bank[[4, 17, 33]])
    assert knn(queries, bank, topk=50).shape == (3, 50, 8)
    # More neighbours than the set holds is an error (issue 14), not a silent clamp.
    with pytest.raises(InputError, match=r"topk .* \[1, 50\]"):
        knn(queries, bank, topk=60)


def test_numpy_conversion_is_float32(codec: FocalCodec) -> None:
    sig = np.zeros(4000, dtype=np.float64)
    assert codec._check_sig(sig).dtype == torch.float32
