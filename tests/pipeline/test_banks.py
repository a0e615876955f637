"""Tests for speaker banks (focalcodec.pipeline.banks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.errors import FormatError, ModelMismatchError
from focalcodec.files.audio import load_audio
from focalcodec.pipeline.banks import (
    load_bank,
    matching_set_from_files,
    matching_set_from_signals,
    save_bank,
)

REFERENCE = "multilingual/it/agent-loginok.flac"


@pytest.fixture(scope="module")
def codec(golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / "noncausal_vocos_50hz").eval()


@pytest.fixture(scope="module")
def ref_path(data_dir: Path) -> Path:
    return data_dir / "audio" / REFERENCE


def test_matching_set_is_the_encoder_features(codec, ref_path):
    bank = matching_set_from_files(codec, [ref_path, ref_path])
    sig, _ = load_audio(ref_path, 16000)
    with torch.inference_mode():
        feats = codec.sig_to_feats(torch.from_numpy(sig)[None])[0]
    assert bank.shape == (2 * feats.shape[0], feats.shape[1])
    torch.testing.assert_close(bank, torch.cat([feats, feats]))


def test_bank_roundtrip_and_checks(codec, ref_path, tmp_path, golden_dir):
    bank = matching_set_from_files(codec, [ref_path])
    path = tmp_path / "spk.safetensors"
    save_bank(path, bank, codec, sources=[ref_path.name])
    torch.testing.assert_close(load_bank(path, codec), bank, atol=0, rtol=0)
    with pytest.raises(FileExistsError):
        save_bank(path, bank, codec)

    other = FocalCodec.from_pretrained(golden_dir / "causal_wavenext_50hz")
    with pytest.raises(ModelMismatchError, match="speaker bank made by"):
        load_bank(path, other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(FormatError, match="not a speaker bank"):
        load_bank(junk)
    with pytest.raises(FormatError, match="no reference audio"):
        matching_set_from_signals(codec, [], 16000)


def test_conversion_uses_the_bank(codec, ref_path):
    bank = matching_set_from_files(codec, [ref_path])
    toks = torch.randint(0, codec.codebook_size, (1, 20))
    with torch.inference_mode():
        plain = codec.toks_to_sig(toks)
        converted = codec.toks_to_sig(toks, matching_set=bank, topk=2)
    assert converted.shape == plain.shape
    assert not np.allclose(converted.numpy(), plain.numpy())
