"""``focalcodec lm ...`` and the entropy options of encode/decode/info, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from focalcodec.identity import header_for
from focalcodec.lm import LMConfig, TokenLM, save_lm
from focalcodec.tokens.dataset import write_tokens

pytest.importorskip("constriction")

CLIP = "librispeech/dev-clean/84/84-121123-0000.flac"  # 2.09 s
MODEL = "causal_wavenext_50hz"  # 16 kHz in, 24 kHz out, 12 bits


@pytest.fixture(scope="module")
def model(golden_dir: Path) -> str:
    return str(golden_dir / MODEL)


@pytest.fixture(scope="module")
def clip(data_dir: Path) -> Path:
    return data_dir / "audio" / CLIP


def make_lm(folder: Path, model: str, seed: int = 0, favour=None) -> Path:
    """A random LM for ``model``'s tokens; with ``favour`` (token ids), a unigram LM
    that gives those tokens most of the probability (so it compresses them)."""
    header = header_for(FocalCodec.from_pretrained(model))
    torch.manual_seed(seed)
    cfg = LMConfig(
        codebook_size=2**header.bits_per_token,
        dim=32,
        num_layers=1,
        num_heads=2,
        context=16,
        codec_hash=header.model_hash.hex(),
        token_rate=header.token_rate,
    )
    lm = TokenLM(cfg)
    if favour is not None:
        with torch.no_grad():
            for p in lm.parameters():
                p.zero_()
            # Every token embeds to the same vector and the blocks add nothing, so
            # the logits are the same at every position: the head's rows decide.
            lm.embed.weight[:, 0] = 1.0
            lm.head.weight[np.unique(favour), 0] = 8.0 + 0.01 * seed
    save_lm(folder, cfg, lm.state_dict())
    return folder


@pytest.fixture(scope="module")
def clip_tokens(clip, model) -> np.ndarray:
    from focalcodec.files.audio import load_audio
    from focalcodec.pipeline.compress import encode_tokens

    sig, rate = load_audio(clip)
    return encode_tokens(sig, rate, FocalCodec.from_pretrained(model).eval())[0]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, model) -> Path:
    return make_lm(tmp_path_factory.mktemp("lm") / "lm", model)


@pytest.fixture(scope="module")
def coding_lm(tmp_path_factory, model, clip_tokens) -> Path:
    return make_lm(tmp_path_factory.mktemp("lm") / "lm", model, favour=clip_tokens)


@pytest.mark.parametrize("verb", ["continue", "generate"])
def test_sampling_writes_the_requested_length(tmp_path, clip, model, lm_dir, verb):
    out = tmp_path / "out.wav"
    args = [verb, *([str(clip)] if verb == "continue" else []), "-o", str(out)]
    opts = ["--lm", str(lm_dir), "-m", model, "--seconds", "0.5", "--top-k", "50"]
    assert main(["lm", *args, *opts, "-q"]) == 0
    wav, rate = sf.read(out)
    assert rate == 24000
    prompt = (
        round(sf.info(str(clip)).frames * 24000 / 16000) if verb == "continue" else 0
    )
    assert len(wav) == prompt + 12000
    # Same seed, same tokens: the output is reproducible; --force is needed again.
    assert main(["lm", *args, *opts, "-q"]) == 1
    first = wav.copy()
    assert main(["lm", *args, *opts, "-q", "--force"]) == 0
    assert np.array_equal(sf.read(out)[0], first)


def test_sampling_refuses_an_lm_of_another_codec(tmp_path, clip, golden_dir, capsys):
    other = make_lm(tmp_path / "other", str(golden_dir / "noncausal_vocos_50hz"))
    code = main(
        ["lm", "continue", str(clip), "-o", str(tmp_path / "o.wav"), "--lm",
         str(other), "-m", str(golden_dir / MODEL), "--seconds", "1"]
    )  # fmt: skip
    assert code == 1
    assert "models 1024 tokens, the codec makes 4096" in capsys.readouterr().err


def test_continue_refuses_to_overwrite_its_prompt(
    tmp_path, clip, model, lm_dir, capsys
):
    prompt = tmp_path / "p.flac"
    prompt.write_bytes(clip.read_bytes())
    args = ["lm", "continue", str(prompt), "-o", str(prompt), "--lm", str(lm_dir)]
    assert main([*args, "-m", model, "--seconds", "1", "--force"]) == 1
    assert "overwrite its own input" in capsys.readouterr().err
    assert prompt.read_bytes() == clip.read_bytes()


def test_encode_decode_info_with_an_lm(tmp_path, clip, model, coding_lm, capsys):
    lm_dir = coding_lm
    plain, coded = tmp_path / "p.fcz", tmp_path / "l.fcz"
    assert main(["encode", str(clip), "-o", str(plain), "-m", model, "-q"]) == 0
    spec = f"lm:{lm_dir}"
    assert (
        main(
            [
                "encode",
                str(clip),
                "-o",
                str(coded),
                "-m",
                model,
                "--entropy",
                spec,
                "-q",
            ]
        )
        == 0
    )
    assert main(["info", "--json", str(coded)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == 2 and info["entropy"].startswith("lm ")
    assert info["size"] < plain.stat().st_size and info["coded_packets"] == 1
    assert info["payload_bits_per_token"] < 8  # 12 bits packed
    # Decoding needs the same LM: without it, or with another one, it is refused.
    wav = tmp_path / "l.wav"
    assert main(["decode", str(coded), "-o", str(wav), "-m", model, "-q"]) == 1
    assert "pass that LM" in capsys.readouterr().err
    other = make_lm(tmp_path / "other", model, seed=1, favour=np.arange(4096))
    args = ["decode", str(coded), "-o", str(wav), "-m", model, "-q"]
    assert main([*args, "--lm", str(other)]) == 1
    assert "use the token LM that encoded it" in capsys.readouterr().err
    assert main([*args, "--lm", str(lm_dir)]) == 0
    assert (
        main(["decode", str(plain), "-o", str(tmp_path / "p.wav"), "-m", model, "-q"])
        == 0
    )
    assert np.array_equal(sf.read(wav)[0], sf.read(tmp_path / "p.wav")[0])


def test_adaptive_entropy_through_the_cli(tmp_path, clip, model, capsys):
    coded = tmp_path / "a.fcz"
    args = ["encode", str(clip), "-o", str(coded), "-m", model, "--entropy", "adaptive"]
    assert main([*args, "-q"]) == 0
    assert main(["info", str(coded)]) == 0
    assert "entropy   adaptive:" in capsys.readouterr().out
    assert (
        main(["decode", str(coded), "-o", str(tmp_path / "a.wav"), "-m", model, "-q"])
        == 0
    )
    assert (
        main(["encode", str(clip), "-o", str(tmp_path / "b.fcz"), "--entropy", "zip"])
        == 2
    )
    assert "use none, adaptive or lm:DIR" in capsys.readouterr().err


def test_lm_eval_reports_bits_per_token(tmp_path, lm_dir, capsys):
    rng = np.random.default_rng(0)
    items = [
        {"id": f"u{i}", "tokens": rng.integers(0, 4096, 50), "split": "test"}
        for i in range(3)
    ]
    write_tokens(tmp_path / "toks", items, {"codebook_size": 4096, "token_rate": 50.0})
    assert (
        main(
            [
                "lm",
                "eval",
                str(tmp_path / "toks"),
                "--lm",
                str(lm_dir),
                "--exact",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["items"] == 3 and result["tokens"] == 150
    # An untrained LM is about uniform: close to the nominal 12 bits per token.
    assert 11.0 < result["bits_per_token"] < 13.0
    assert abs(result["exact_bits_per_token"] - result["bits_per_token"]) < 0.01
    assert result["bits_per_second"] == pytest.approx(50 * result["bits_per_token"])
