"""``focalcodec resynth``: audio to audio through a model, the input tree mirrored."""

from __future__ import annotations

import soundfile as sf

from focalcodec.files.audio import load_audio
from support import rel_files, run_cli


def test_resynth(tmp_path, tree, model):
    out = tmp_path / "re"
    args = (
        "resynth",
        tree / "a",
        tree / "noisy48k.flac",
        "-o",
        out,
        "--format",
        "flac",
    )
    assert run_cli(*args, "-m", model, "-q") == 0
    assert rel_files(out) == ["noisy48k.flac", "one.flac"]
    sig16, _ = load_audio(tree / "a" / "one.flac", 16000)
    assert sf.info(out / "one.flac").frames == int(len(sig16) * 1.5)
