"""``focalcodec vc``: kNN voice conversion with reference files or a saved bank."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from focalcodec.files.audio import load_audio
from support import run_cli

REFERENCES = [
    "multilingual/it/agent-loginok.flac",
    "multilingual/it/agent-newlocation.flac",
]


def test_vc_with_saved_bank(tmp_path, tree, audio_dir, model, golden_dir, capsys):
    bank = tmp_path / "spk.safetensors"
    refs = [audio_dir / r for r in REFERENCES]
    src = tree / "a" / "one.flac"
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    args = ("vc", src, "-o", a, "-r", *refs, "--save-bank", bank, "-m", model, "-q")
    assert run_cli(*args) == 0
    assert bank.exists()
    assert run_cli("vc", src, "-o", b, "--bank", bank, "-m", model, "-q") == 0
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])
    sig16, _ = load_audio(src, 16000)
    assert sf.info(a).frames == int(len(sig16) * 1.5)
    # A .fcz source gives the same conversion as the audio it came from.
    fcz, c = tmp_path / "one.fcz", tmp_path / "c.wav"
    assert run_cli("encode", src, "-o", fcz, "-m", model, "-q") == 0
    assert run_cli("vc", fcz, "-o", c, "--bank", bank, "-m", model, "-q") == 0
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(c)[0])
    # A bank made by another model is refused.
    capsys.readouterr()
    other = golden_dir / "causal_vocos_25hz_postnorm"
    assert (
        run_cli("vc", src, "-o", tmp_path / "d.wav", "--bank", bank, "-m", other) == 1
    )
    assert "speaker bank made by" in capsys.readouterr().err
