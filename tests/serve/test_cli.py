"""``focalcodec serve`` in a process of its own, and ``focalcodec client`` against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec.fcz import bitstream
from support import AUDIO, CLEAN, DATA, free_port, load_golden, one_line_error, run_cli

MODEL = DATA / "golden" / "causal_wavenext_50hz"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--host", "0.0.0.0"], "--api-key-file"),
        (["--host", "192.168.1.7", "--api-key-file", "missing.txt"], "cannot read"),
        (["--ssl-certfile", "cert.pem"], "--ssl-keyfile"),
    ],
)
def test_refusals_are_one_line_and_exit_2(capsys, extra, words):
    assert run_cli("serve", "-m", MODEL, *extra) == 2
    assert words in one_line_error(capsys, prefix=True)


def test_a_short_key_is_refused(capsys, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("short\n")
    assert run_cli("serve", "-m", MODEL, "--api-key-file", key, "--host", "::") == 2
    assert "16 characters" in one_line_error(capsys, prefix=True)


def test_serve_and_client_from_the_command_line(tmp_path):
    port = free_port()
    key = tmp_path / "key.txt"
    key.write_text("a-key-of-the-right-length-0123\n")
    command = [sys.executable, "-m", "focalcodec", "serve", "-m", str(MODEL)]
    command += ["--port", str(port), "--api-key-file", str(key), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        _wait_healthy(port, server)
        out_fcz, out_wav = tmp_path / "out.fcz", tmp_path / "out.wav"
        url = f"http://127.0.0.1:{port}"
        source = AUDIO / CLEAN
        args = ["client", url, source, "-o", out_fcz, "-o", out_wav]
        assert run_cli(*args, "--api-key-file", key) == 0
        codec = load_golden(MODEL.name).codec
        sig, _ = sf.read(source, dtype="float32")
        with torch.inference_mode():
            toks = codec.sig_to_toks(torch.from_numpy(sig)[None])[0].numpy()
        assert np.array_equal(bitstream.loads(out_fcz.read_bytes()).toks, toks)
        audio, rate = sf.read(out_wav)
        assert rate == 24000 and len(audio) == codec.output_length(len(sig))
        # Without the key the server refuses, and the client says so in one line.
        assert run_cli("client", url, source, "-o", tmp_path / "x.fcz") == 1
        assert "API key" in _healthz_and_error(port, server, tmp_path, url, source)
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(30) in (0, 130, -signal.SIGINT)
    assert "focalcodec serve:" in server.stdout.read()


def _wait_healthy(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server never answered /healthz")


def _healthz_and_error(port, server, tmp_path, url, source) -> str:
    """The client's error line for a refused stream (the server still healthy)."""
    _wait_healthy(port, server)
    result = subprocess.run(
        [sys.executable, "-m", "focalcodec", "client", url, str(source)]
        + ["-o", str(tmp_path / "y.fcz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]
