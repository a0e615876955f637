"""``focalcodec tokenize`` end to end: manifests, folders, resume, formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec.fcz import bitstream
from focalcodec.files.audio import load_audio
from focalcodec.runtime import native_bf16
from focalcodec.tokens.dataset import TokenDataset
from support import CLIPS as CLEAN
from support import NOISY
from support import run_cli as run

# Share of its fp32 tokens that the CLI model keeps in bf16 on the `tree` clips: measured
# 0.902 on an AVX512-BF16 CPU (tests/deploy/test_fast.py: 0.898 on other clips).
BF16_MIN_TOKENS = 0.85


def solo_matches(out: Path, model: str) -> list[tuple[int, int]]:
    """Per item of the token folder ``out``: (tokens equal to its solo fp32 tokens,
    tokens), the solo tokens from ``model`` encoding the item's file alone."""
    from focalcodec import FocalCodec

    solo = FocalCodec.from_pretrained(model).eval()
    counts = []
    for item in TokenDataset(out):
        sig = load_audio(item["path"], solo.sample_rate_input).sig
        expected = solo.sig_to_toks(sig[None])[0].numpy()
        assert item["tokens"].shape == expected.shape, item["id"]
        counts.append((int((item["tokens"] == expected).sum()), expected.size))
    return counts


def write_manifest(path: Path, audio_dir: Path, entries: list[str]) -> None:
    lines = [
        json.dumps({"path": str(audio_dir / e), "speaker": "x", "text": "hi"})
        for e in entries
    ]
    path.write_text("\n".join(lines) + "\n")


def test_manifest_resume_and_model_change(tmp_path, audio_dir, model, capsys):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, audio_dir, CLEAN[:1] + [NOISY])
    out = tmp_path / "toks"
    args = ("tokenize", manifest, "-o", out, "-m", model, "--shard-size", "1")
    assert run(*args) == 0
    ds = TokenDataset(out, verify=True)
    fcz = tmp_path / "ref.fcz"
    assert run("encode", audio_dir / NOISY, "-o", fcz, "-m", model, "-q") == 0
    item = ds[1]
    assert item["id"] == str(audio_dir / NOISY)
    np.testing.assert_array_equal(
        item["tokens"], bitstream.loads(fcz.read_bytes()).toks
    )
    assert item["speaker"] == "x" and item["text"] == "hi"
    assert item["num_tokens"] == len(item["tokens"])
    assert item["duration"] == pytest.approx(item["num_samples"] / 16000)

    # Second run: everything is done already, nothing is rewritten.
    capsys.readouterr()
    before = (out / "tokens.npy").stat().st_mtime_ns
    assert run(*args) == 0
    assert "2 items already done" in capsys.readouterr().err
    assert (out / "tokens.npy").stat().st_mtime_ns == before
    # More items in the manifest: only the new ones are encoded; source order is kept.
    write_manifest(manifest, audio_dir, CLEAN + [NOISY])
    assert run(*args, "-q") == 0
    assert TokenDataset(out).ids == [str(audio_dir / e) for e in CLEAN + [NOISY]]
    np.testing.assert_array_equal(TokenDataset(out)[2]["tokens"], item["tokens"])

    # Another model may not append to this dataset, unless --force starts over.
    other = str(Path(model).parent / "causal_vocos_25hz_postnorm")
    capsys.readouterr()
    assert run("tokenize", manifest, "-o", out, "-m", other, "-q") == 1
    assert "--force" in capsys.readouterr().err
    assert run("tokenize", manifest, "-o", out, "-m", other, "-q", "--force") == 0
    assert len(TokenDataset(out)) == 3 and TokenDataset(out).meta["token_rate"] == 25


def test_directory_input(tmp_path, tree, model):
    out = tmp_path / "toks"
    assert run("tokenize", tree, "-o", out, "-m", model, "-q", "--batch-size", "2") == 0
    ds = TokenDataset(out)
    assert ds.ids == ["a/one.flac", "b/c/two.flac", "noisy48k.flac"]
    assert ds[0]["speaker"] == "a" and ds[0]["path"] == str(tree / "a" / "one.flac")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["bits_per_token"] == 12 and meta["token_rate"] == 50.0
    assert meta["codebook_size"] == 4096 and meta["format"] == "npy"


def test_parquet_format(tmp_path, tree, model):
    pytest.importorskip("pyarrow")
    out = tmp_path / "toks"
    assert (
        run("tokenize", tree, "-o", out, "-m", model, "-q", "--format", "parquet") == 0
    )
    npy = tmp_path / "npy"
    assert run("tokenize", tree, "-o", npy, "-m", model, "-q") == 0
    for a, b in zip(TokenDataset(out), TokenDataset(npy), strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    suffixes = sorted(p.suffix for p in out.iterdir())
    assert suffixes == [".json", ".jsonl", ".md", ".parquet"]  # with a dataset card
    card = (out / "README.md").read_text()
    assert "| codebook size | 4096 (12 bits per token) |" in card
    assert f"focalcodec tokenize {tree} -o {out}" in card


def test_tokens_back_to_audio(tmp_path, tree, model):
    import torch

    from focalcodec import FocalCodec
    from focalcodec.errors import ModelMismatchError

    out = tmp_path / "toks"
    assert run("tokenize", tree, "-o", out, "-m", model, "-q") == 0
    ds = TokenDataset(out)
    codec = FocalCodec.from_pretrained(model).eval()
    sig = ds.decode(1, codec)
    with torch.inference_mode():
        ref = codec.toks_to_sig(torch.from_numpy(ds[1]["tokens"])[None])[0]
    assert sig.shape == ref.shape and torch.equal(sig, ref)
    other = FocalCodec.from_pretrained(Path(model).parent / "noncausal_vocos_50hz")
    with pytest.raises(ModelMismatchError, match="config"):
        ds.decode(1, other)


@pytest.mark.parametrize(
    ("flag", "padded_calls"),
    [(None, False), ("--exact", False), ("--batched", True)],
)
def test_cpu_default_is_item_by_item_and_batched_is_on_request(
    tmp_path, tree, model, monkeypatch, flag, padded_calls
):
    """On a CPU the default encodes item by item (the fastest there, and bit-exact);
    --batched forces the padded buckets, whose tokens agree with the solo ones."""
    from focalcodec import FocalCodec

    calls: list[int] = []
    padded = FocalCodec.sig_to_toks_padded

    def counting(self, sig, lengths):
        calls.append(sig.shape[0])
        return padded(self, sig, lengths)

    monkeypatch.setattr(FocalCodec, "sig_to_toks_padded", counting)
    out = tmp_path / "toks"
    args = ["tokenize", tree, "-o", out, "-m", model, "-q", "--device", "cpu"]
    assert run(*args, *([flag] if flag else []), "--batch-size", "3") == 0
    assert bool(calls) == padded_calls
    if padded_calls:
        assert max(calls) >= 2  # a real batch, not items one at a time
    for same, total in solo_matches(out, model):
        # Solo tokens exactly, or (padded) all but float-rounding ties.
        assert same == total if not padded_calls else same / total >= 0.99


def test_exact_and_batched_exclude_each_other(tmp_path, tree, model, capsys):
    out = tmp_path / "toks"
    assert run("tokenize", tree, "-o", out, "-m", model, "--exact", "--batched") == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bf16_is_refused_where_the_cpu_would_emulate_it(
    tmp_path, tree, model, monkeypatch, capsys
):
    from focalcodec import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    out = tmp_path / "toks"
    args = ["tokenize", tree, "-o", out, "-m", model, "--device", "cpu"]
    assert run(*args, "--precision", "bf16") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "native bf16" in err
    assert not out.exists()


def test_bf16_is_refused_with_the_onnx_backend(tmp_path, tree, model, capsys):
    out = tmp_path / "toks"
    args = ["tokenize", tree, "-o", out, "-m", model, "--backend", "onnx"]
    assert run(*args, "--precision", "bf16") == 2
    assert "PyTorch backend" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="no native bf16 CPU")
def test_bf16_on_a_native_bf16_cpu_changes_few_tokens(tmp_path, tree, model):
    out = tmp_path / "toks"
    args = ["tokenize", tree, "-o", out, "-m", model, "-q", "--device", "cpu"]
    assert run(*args, "--precision", "bf16") == 0
    same, total = (sum(column) for column in zip(*solo_matches(out, model)))
    assert BF16_MIN_TOKENS <= same / total < 1.0
