"""No silent garbage: non-finite latents or audio, and impossible output lengths, are
errors, never exit 0.

One float sample at 1e30 made every latent non-finite and every token 0, with only a
clipping warning (hidden by ``-q``); ``toks_to_sig(output_length=-5)`` returned audio and
``output_length=10**12`` tried a 4 TB allocation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.errors import InputError
from focalcodec.inputs import MAX_OUTPUT_SECONDS

MODELS = ["causal_wavenext_50hz", "noncausal_vocos_50hz"]


@pytest.fixture(scope="module", params=MODELS)
def codec(request, golden_dir: Path) -> FocalCodec:
    return FocalCodec.from_pretrained(golden_dir / request.param).eval()


def spiked(peak: float = 1e30) -> torch.Tensor:
    sig = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    sig[0, 8000] = peak
    return sig


@pytest.mark.parametrize("call", ["sig_to_toks", "sig_to_codes", "sig_to_sig"])
def test_one_huge_sample_is_an_error_not_zero_tokens(codec, call):
    with torch.inference_mode(), pytest.raises(InputError, match="NaN or infinite"):
        getattr(codec, call)(spiked())


def test_padded_batches_check_their_latents_too(codec):
    sig = torch.cat([spiked(), 0.1 * torch.ones(1, 16000)])
    with torch.inference_mode(), pytest.raises(InputError, match="latents"):
        codec.sig_to_toks_padded(sig, torch.tensor([16000, 16000]))


def test_a_huge_sample_in_a_file_fails_the_encode(tmp_path, golden_dir, capsys):
    path = tmp_path / "spike.wav"
    sf.write(path, spiked()[0].numpy(), 16000, subtype="FLOAT")
    out = tmp_path / "spike.fcz"
    args = ["encode", str(path), "-o", str(out), "-m", str(golden_dir / MODELS[1])]
    assert main([*args, "-q"]) == 1
    assert "NaN or infinite" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("bad", [-5, 0, 10**12, 2.5, True, "100"])
def test_impossible_output_lengths_are_refused(codec, bad):
    toks = torch.zeros(1, 8, dtype=torch.long)
    with torch.inference_mode():
        for call, arg in (
            ("toks_to_sig", toks),
            ("codes_to_sig", codec.toks_to_codes(toks)),
            ("feats_to_sig", codec.toks_to_qfeats(toks)),
        ):
            with pytest.raises(InputError, match="output_length"):
                getattr(codec, call)(arg, output_length=bad)


def test_the_largest_output_length_is_a_day(codec):
    limit = MAX_OUTPUT_SECONDS * codec.sample_rate_output
    with torch.inference_mode():
        sig = codec.toks_to_sig(torch.zeros(1, 4, dtype=torch.long), output_length=7)
        assert sig.shape == (1, 7)
        with pytest.raises(InputError, match=str(limit)):
            codec.toks_to_sig(
                torch.zeros(1, 4, dtype=torch.long), output_length=limit + 1
            )


def test_the_onnx_backend_refuses_them_too(tmp_path_factory, golden_dir):
    pytest.importorskip("onnxruntime")
    from focalcodec.deploy.onnx_runtime import OnnxCodec
    from support import exported

    _, out, _ = exported(tmp_path_factory, golden_dir, MODELS[0])
    onnx = OnnxCodec(out, threads=1)
    toks = np.zeros((1, 8), dtype=np.int64)
    for bad in (-5, 10**12):
        with pytest.raises(InputError, match="output_length"):
            onnx.toks_to_sig(toks, output_length=bad)
    assert onnx.toks_to_sig(toks, output_length=9).shape == (1, 9)
