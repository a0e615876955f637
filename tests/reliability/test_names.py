"""File names in reports are escaped: they cannot forge report lines or control the
terminal.

A newline in a file name printed as it is forges a second report line (``focalcodec:
error: ...`` or a fake success); an escape sequence (``\\x1b[2J``) clears or recolours
the terminal. Every line the command line prints goes through one escaping function, so
one failure is always one line, with no raw control character.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from focalcodec.cli import main
from focalcodec.cli.report import printable

MODEL = "causal_wavenext_50hz"
NAMES = [
    "forged\nfocalcodec: encoded 1 file, all fine.wav",
    "clear\x1b[2J\x1b[31mred.wav",
    "bell\x07\rreturn.wav",
    "bidi\u202eva.wav",
]


def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("a\nb") == "a\\nb"
    assert printable("x\x1b[2Jy") == "x\\x1b[2Jy"
    assert printable("\r\t\x00") == "\\r\\t\\x00"
    assert printable("ok name é 音.wav") == "ok name é 音.wav"
    assert printable("\u202e") == "\\u202e"


def test_names_with_control_characters_give_one_escaped_line_each(
    tmp_path, golden_dir, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in NAMES:
        (folder / name).write_bytes(b"not audio at all")  # each one fails to decode
    sf.write(folder / "good.wav", 0.1 * np.ones(8000, np.float32), 16000)
    out = tmp_path / "out"
    code = main(["encode", str(folder), "-o", str(out), "-m", str(golden_dir / MODEL)])
    assert code == 1
    err = capsys.readouterr().err
    assert not any(c in err for c in "\x1b\x07\r\u202e")
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("focalcodec: error:")]
    # One line per bad file, one count line; nothing else claims to be ours.
    assert len(errors) == len(NAMES) + 1
    assert sum(line.startswith("focalcodec:") for line in lines) == len(errors)
    for name in NAMES:
        assert sum(printable(name) in line for line in errors) == 1
    assert (out / "good.fcz").is_file()


def test_a_name_that_fails_in_a_single_file_run_is_one_line(tmp_path, capsys):
    path = tmp_path / "two\nlines.fcz"
    path.write_bytes(b"FCZ\x09broken")
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two\\nlines.fcz" in err
    assert Path(path).exists()
