"""The dispatcher: help, the verb table, usage errors, ``python -m focalcodec``."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from focalcodec.cli import app
from focalcodec.fcz import bitstream
from support import one_line_error, run_cli


def test_help_lists_every_subcommand(capsys):
    assert run_cli("--help") == 0
    out = capsys.readouterr().out
    for name in app.VERBS:
        assert name in out
    assert run_cli() == 2


def test_external_subcommands(monkeypatch, capsys):
    monkeypatch.setitem(
        app.VERBS, "export", app.Verb("_missing_module", "export", "onnx")
    )
    assert run_cli("export", "x") == 2
    assert "pip install 'focalcodec[onnx]'" in one_line_error(capsys, prefix=True)

    fake = types.ModuleType("focalcodec.cli._fake_stream")
    fake.add_arguments = lambda parser: parser.add_argument("--value", type=int)
    fake.run = lambda args: args.value
    monkeypatch.setitem(sys.modules, "focalcodec.cli._fake_stream", fake)
    monkeypatch.setitem(app.VERBS, "stream", app.Verb("_fake_stream", "stream", None))
    assert run_cli("stream", "--value", "7") == 7


@pytest.mark.parametrize(
    "args",
    [
        ("decode", "x.fcz", "-o", "noext"),
        ("decode", "x.fcz", "y.fcz", "-o", "-"),
        ("decode", "x.fcz", "-o", "a.wav", "--format", "flac"),
        ("encode", "x.wav", "-o", "y.fcz", "--device", "nonsense"),
        ("vc", "x.wav", "-o", "y.wav"),
        ("encode", "x.wav"),
    ],
)
def test_usage_errors(tmp_path, monkeypatch, args, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.wav").write_bytes(b"")
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


def test_python_m_subprocess(tmp_path, clips, model):
    """`python -m focalcodec` with stdin/stdout pipes, as a shell user would run it."""
    with open(clips[1], "rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "focalcodec", "encode", "-", "-o", "-", "-m", model],
            stdin=stdin,
            capture_output=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    ref = tmp_path / "ref.fcz"
    assert run_cli("encode", clips[1], "-o", ref, "-m", model, "-q") == 0
    np.testing.assert_array_equal(
        bitstream.loads(proc.stdout).toks, bitstream.loads(ref.read_bytes()).toks
    )


@pytest.mark.parametrize(
    ("check", "text", "message"),
    [
        ("positive_int", "0", "must be at least 1, got 0"),
        ("positive_int", "2.5", "expected a whole number, got '2.5'"),
        ("non_negative_int", "-1", "must be at least 0, got -1"),
        ("non_negative_int", "x", "expected a whole number"),
    ],
)
def test_integer_option_types_refuse(check: str, text: str, message: str) -> None:
    import argparse

    from focalcodec.cli import options

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        getattr(options, check)(text)


def test_integer_option_types_accept_their_lower_bound() -> None:
    from focalcodec.cli.options import non_negative_int, positive_int

    assert positive_int("1") == 1 and positive_int(" 7 ") == 7
    assert non_negative_int("0") == 0
