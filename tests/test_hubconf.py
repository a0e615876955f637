"""torch.hub entry point: loading from a local checkout, with and without an install."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from focalcodec import FocalCodec
from support import REPO


def _load(**kwargs):
    return torch.hub.load(str(REPO), "focalcodec", source="local", **kwargs)


def test_hub_loads_a_pretrained_model_in_eval_mode(golden_dir: Path) -> None:
    case = golden_dir / "causal_wavenext_50hz"
    model = _load(config=str(case))
    ref = FocalCodec.from_pretrained(case).eval()
    assert isinstance(model, FocalCodec) and not model.training
    sig = 0.1 * torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.sig_to_toks(sig), ref.sig_to_toks(sig))


def test_hub_builds_random_weights_with_overrides(golden_dir: Path) -> None:
    config = golden_dir / "noncausal_vocos_50hz" / "config.json"
    overrides = {"quantizer_config": {"codebook_size": 256}}
    model = _load(config=str(config), pretrained=False, overrides=overrides)
    assert model.codebook_size == 256
    assert model.config["encoder_config"]["dim"] == 64


def test_hub_entry_point_has_the_original_parameters() -> None:
    spec = importlib.util.spec_from_file_location("hubconf_sig", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = inspect.signature(module.focalcodec).parameters
    assert [(p.name, p.default) for p in params.values()][:3] == [
        ("config", "lucadellalib/focalcodec_50hz"),
        ("pretrained", True),
        ("overrides", None),
    ]
    assert list(params.values())[3].kind is inspect.Parameter.VAR_KEYWORD


def test_hub_positional_call_with_dot_path_overrides(golden_dir: Path) -> None:
    # As the original README calls it, with the arguments given by position.
    config = str(golden_dir / "causal_wavenext_50hz" / "config.json")
    model = _load_positional(config, False, {"encoder_config.max_cached_steps": 0})
    assert model.encoder_config["max_cached_steps"] == 0
    assert model.config["encoder_config"]["max_cached_steps"] == 0


def _load_positional(*args):
    return torch.hub.load(str(REPO), "focalcodec", *args, source="local")


def test_hub_dependencies_are_importable() -> None:
    spec = importlib.util.spec_from_file_location("hubconf_check", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in module.dependencies:
        assert importlib.util.find_spec(name) is not None, name


def test_hubconf_falls_back_to_the_checkout_sources(golden_dir: Path) -> None:
    # A fresh interpreter from which the installed focalcodec is hidden: only the
    # repository's src/ (which hubconf adds) can provide it.
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        src = {str(REPO / "src")!r}
        sys.path[:] = [p for p in sys.path if p.rstrip("/") != src]
        if importlib.util.find_spec("focalcodec") is not None:
            print("SKIP focalcodec is installed outside the checkout")
            raise SystemExit(0)
        import torch
        model = torch.hub.load({str(REPO)!r}, "focalcodec", source="local",
                               config={str(golden_dir / "noncausal_vocos_50hz")!r})
        import focalcodec
        print("FROM", focalcodec.__file__, type(model).__name__)
        """
    )
    env = dict(os.environ, PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.startswith("SKIP"):
        pytest.skip(result.stdout.strip())
    assert (
        f"FROM {REPO / 'src' / 'focalcodec' / '__init__.py'} FocalCodec"
        in result.stdout
    )
