"""The original demo script's modes and the ``focalcodec`` commands that replace them.

For each mode, the command's output file is compared with what the demo computes, the
demo's calls written out here in this package's API (the original call forms). The
microphone source is covered by ``tests/cli/test_stream.py`` (a faked sound device).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec import FocalCodec
from focalcodec.cli import main
from support import load_golden

CAUSAL = "causal_wavenext_50hz"  # the streaming model (16 kHz in, 24 kHz out)
OFFLINE = "noncausal_vocos_50hz"  # the model whose features form the matching set
# Written files hold 16-bit PCM samples; allow for that rounding.
FILE_TOL = 1e-4


@pytest.fixture(scope="module")
def speech(golden_dir: Path) -> np.ndarray:
    io = load_golden(CAUSAL).io
    return (io["input.sig"][0, :9000] * 0.5).numpy()  # not a whole number of chunks


@pytest.fixture
def files(tmp_path: Path, speech: np.ndarray, golden_dir: Path) -> dict[str, Path]:
    src = tmp_path / "in.wav"
    sf.write(src, speech, 16000, subtype="FLOAT")
    refs = tmp_path / "refs"
    refs.mkdir()
    io = load_golden(CAUSAL).io
    sf.write(refs / "a.wav", io["input.ref_sig"][0].numpy(), 16000, subtype="FLOAT")
    sf.write(refs / "b.wav", io["input.sig"][1, :6000].numpy(), 16000, subtype="FLOAT")
    return {"src": src, "refs": refs}


def _read(path: Path) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32")
    return data


def _matching_set(model: FocalCodec, refs: Path) -> torch.Tensor:
    # The demo: the features of every reference file, concatenated over frames.
    parts = []
    for path in sorted(refs.glob("*.wav")):
        sig = torch.from_numpy(_read(path))[None]
        parts.append(model.sig_to_feats(sig)[0])
    return torch.cat(parts)


def _demo_stream(model: FocalCodec, sig: np.ndarray, matching_set=None) -> np.ndarray:
    """The demo's streaming loop: zero-padded last chunk, two states per half."""
    chunk = model.chunk_size
    enc, comp, dec, voc = [], [], [], []
    outs = []
    x = torch.from_numpy(sig)[None]
    for i in range(0, x.shape[1], chunk):
        piece = x[:, i : i + chunk]
        piece = torch.nn.functional.pad(piece, (0, chunk - piece.shape[1]))
        toks, enc, comp = model.sig_to_toks(piece, enc, comp, return_state=True)
        out, dec, voc = model.toks_to_sig(
            toks, dec, voc, matching_set=matching_set, return_state=True
        )
        outs.append(out[0])
    return torch.cat(outs).numpy()


def _assert_close(file_out: np.ndarray, expected: np.ndarray) -> None:
    assert file_out.shape == expected.shape
    assert np.abs(file_out - np.clip(expected, -1, 1)).max() <= FILE_TOL


@torch.no_grad()
def test_offline_resynthesis(golden_dir: Path, files, tmp_path: Path) -> None:
    out = tmp_path / "rec.wav"
    args = [
        "resynth",
        str(files["src"]),
        "-o",
        str(out),
        "-m",
        str(golden_dir / OFFLINE),
    ]
    assert main([*args, "-q"]) == 0
    model = FocalCodec.from_pretrained(golden_dir / OFFLINE).eval()
    sig = torch.from_numpy(_read(files["src"]))[None]
    expected = model.toks_to_sig(model.sig_to_toks(sig), output_length=sig.shape[1])
    _assert_close(_read(out), expected[0].numpy())


@torch.no_grad()
def test_streaming_from_a_file(golden_dir: Path, files, tmp_path: Path) -> None:
    out = tmp_path / "rec.wav"
    model_dir = golden_dir / CAUSAL
    args = ["stream", str(files["src"]), "-o", str(out), "-m", str(model_dir), "-q"]
    assert main([*args, "--pad", "zeros"]) == 0
    model = FocalCodec.from_pretrained(model_dir).eval()
    demo = _demo_stream(model, _read(files["src"]))
    # The demo keeps the decoded padding; the command stops at the input's end.
    size = len(_read(files["src"])) * 3 // 2
    _assert_close(_read(out), demo[:size])


@torch.no_grad()
def test_offline_voice_conversion(golden_dir: Path, files, tmp_path: Path) -> None:
    out = tmp_path / "vc.wav"
    model_dir = golden_dir / OFFLINE
    args = ["vc", str(files["src"]), "-r", str(files["refs"]), "-o", str(out)]
    assert main([*args, "-m", str(model_dir), "-q"]) == 0
    model = FocalCodec.from_pretrained(model_dir).eval()
    sig = torch.from_numpy(_read(files["src"]))[None]
    bank = _matching_set(model, files["refs"])
    toks = model.sig_to_toks(sig)
    expected = model.toks_to_sig(toks, matching_set=bank, output_length=sig.shape[1])
    _assert_close(_read(out), expected[0].numpy())


@torch.no_grad()
def test_streaming_voice_conversion(golden_dir: Path, files, tmp_path: Path) -> None:
    out = tmp_path / "vc.wav"
    args = ["stream", str(files["src"]), "-o", str(out), "-m", str(golden_dir / CAUSAL)]
    args += ["--ref", str(files["refs"]), "--ref-model", str(golden_dir / OFFLINE)]
    assert main([*args, "--pad", "zeros", "-q"]) == 0
    model = FocalCodec.from_pretrained(golden_dir / CAUSAL).eval()
    offline = FocalCodec.from_pretrained(golden_dir / OFFLINE).eval()
    bank = _matching_set(offline, files["refs"])
    demo = _demo_stream(model, _read(files["src"]), matching_set=bank)
    size = len(_read(files["src"])) * 3 // 2
    _assert_close(_read(out), demo[:size])
    # The streaming model's own features give another voice: --ref-model matters.
    own = tmp_path / "own.wav"
    base = ["stream", str(files["src"]), "-m", str(golden_dir / CAUSAL), "-q"]
    assert (
        main([*base, "--ref", str(files["refs"]), "-o", str(own), "--pad", "zeros"])
        == 0
    )
    assert np.abs(_read(own) - _read(out)).max() > 100 * FILE_TOL


def test_ref_model_needs_ref(golden_dir: Path, files, capsys) -> None:
    args = ["stream", str(files["src"]), "-m", str(golden_dir / CAUSAL)]
    assert main([*args, "--ref-model", str(golden_dir / OFFLINE)]) == 2
    assert "--ref-model applies to --ref" in capsys.readouterr().err
