"""``--kernels NAME`` on the command line.

References: the bytes that the ``plain`` backend (torch's own ``F.linear``) writes for
the same command (tokens of exact mode do not depend on the backend), and the backend
list of :mod:`focalcodec.modules.kernels`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from focalcodec.modules import kernels
from support import one_line_error, run_cli

CLIP = "librispeech/dev-clean/84/84-121123-0000.flac"
CASE = "causal_wavenext_50hz"


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    kernels.set_backend(None)


@pytest.mark.parametrize("name", kernels.available())
def test_every_backend_writes_the_bytes_of_plain(
    tmp_path, data_dir: Path, golden_dir: Path, name: str
) -> None:
    clip, model = data_dir / "audio" / CLIP, golden_dir / CASE
    made = {}
    for backend in dict.fromkeys(("plain", name)):
        out = tmp_path / f"{backend}.fcz"
        args = ("encode", clip, "-o", out, "-m", model, "--kernels", backend, "-q")
        assert run_cli(*args) == 0
        assert kernels.backend() == backend  # the option reached the products
        made[backend] = out.read_bytes()
    assert made[name] == made["plain"]


@pytest.mark.parametrize("verb", ["encode", "stream", "eval", "serve"])
def test_unknown_backend_is_one_usage_line(tmp_path, capsys, verb: str) -> None:
    args = {
        "encode": ("encode", tmp_path / "x.wav", "-o", tmp_path / "x.fcz"),
        "stream": ("stream", tmp_path / "x.wav"),
        "eval": ("eval", tmp_path / "x.wav"),
        "serve": ("serve", "-m", tmp_path / "model"),
    }[verb]
    assert run_cli(*args, "--kernels", "avx9000") == 2
    err = one_line_error(capsys, prefix=True)
    assert "--kernels" in err and "avx9000" in err and "plain" in err
    assert not (tmp_path / "x.fcz").exists()


def test_mkl_is_the_blas_backend(tmp_path, data_dir: Path, golden_dir: Path) -> None:
    out = tmp_path / "x.fcz"
    clip, model = data_dir / "audio" / CLIP, golden_dir / CASE
    assert (
        run_cli("encode", clip, "-o", out, "-m", model, "--kernels", "mkl", "-q") == 0
    )
    assert kernels.backend() == "blas"
