"""Training the token LM with the package's trainer: learning, resume, torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from focalcodec.errors import ConfigError
from focalcodec.lm import load_lm
from focalcodec.lm.data import PAD, LMCollate, Windows, open_tokens
from focalcodec.lm.train import load_lm_config, run
from focalcodec.tokens.dataset import write_tokens
from focalcodec.train.checkpoint import list_checkpoints

pytest.importorskip("yaml")

TINY = [
    "model.dim=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.context=24",
    "data.batch_size=4",
    "data.valid_split=test",
    "log.every=5",
    "log.progress=false",
    "trainer.device=cpu",
    "trainer.valid_every=0",
    "trainer.checkpoint_every=20",
    "optim.lr=3e-3",
]


def learnable_folder(folder: Path) -> Path:
    """Items that follow one rule, next = (5 * token + 3) mod 32, from random starts."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(24):
        toks = [int(rng.integers(0, 32))]
        for _ in range(int(rng.integers(40, 72))):
            toks.append((5 * toks[-1] + 3) % 32)
        split = "test" if i % 6 == 0 else "train"
        items.append({"id": f"u{i:02d}", "tokens": toks, "split": split})
    write_tokens(folder, items, {"codebook_size": 32, "token_rate": 50.0})
    return folder


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return learnable_folder(tmp_path_factory.mktemp("tokens") / "toks")


def train(tokens: Path, run_dir: Path, *extra: str, resume: bool = False):
    cfg = load_lm_config(
        None, [f"data.source={tokens}", f"run_dir={run_dir}", *TINY, *extra]
    )
    return run(cfg, resume=resume)


def test_loss_falls_on_a_learnable_sequence(tokens, tmp_path):
    start = train(tokens, tmp_path / "a", "trainer.max_steps=1")
    end = train(tokens, tmp_path / "b", "trainer.max_steps=120")
    # Uniform over 32 tokens is 5 bits; after the first token, every token is certain.
    assert start["bits_per_token"] > 4.0
    assert end["bits_per_token"] < 0.5 * start["bits_per_token"]
    assert end["bits_per_second"] == pytest.approx(50.0 * end["bits_per_token"])
    lm = load_lm(tmp_path / "b" / "export")
    assert lm.cfg.codebook_size == 32 and lm.cfg.context == 24


def test_resume_continues_exactly(tokens, tmp_path):
    train(tokens, tmp_path / "once", "trainer.max_steps=40")
    train(tokens, tmp_path / "twice", "trainer.max_steps=20")
    train(tokens, tmp_path / "twice", "trainer.max_steps=40", resume=True)
    a = load_file(str(list_checkpoints(tmp_path / "once")[-1] / "model.safetensors"))
    b = load_file(str(list_checkpoints(tmp_path / "twice")[-1] / "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_packing_and_validation_windows(tokens):
    ds = open_tokens(tokens)
    collate = LMCollate(block_len=25, separator=32)
    batch = collate([ds[0], ds[1]])["block"]
    n0, n1 = ds[0]["num_tokens"], ds[1]["num_tokens"]
    flat = batch.reshape(-1)
    assert batch.shape[1] == 25
    assert flat[0] == 32 and flat[1 + n0] == 32  # a separator before each item
    assert (flat[2 + n0 + n1 :] == PAD).all()
    windows = Windows(ds, [0, 1], block_len=25, separator=32)
    assert windows.num_targets <= n0 + n1 + 1 < windows.num_targets + 24
    w0, w1 = windows[0]["block"], windows[1]["block"]
    assert w0[-1] == w1[0]  # consecutive windows share one token


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_shipped_lm_recipes_load(name):
    path = Path(__file__).resolve().parents[2] / "configs" / "lm" / f"{name}.yaml"
    cfg = load_lm_config(path)
    assert cfg.stage == "lm" and cfg.data.source
    if name == "paper":  # the paper's LM: 12 layers, width 512, 4 heads
        assert (cfg.model.num_layers, cfg.model.dim, cfg.model.num_heads) == (
            12,
            512,
            4,
        )


def test_bad_recipes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.source"):
        load_lm_config(None, [])
    with pytest.raises(ConfigError, match="unknown config key 'model.width'"):
        load_lm_config(None, ["data.source=x", "model.width=3"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_training_on_a_gpu(tokens, tmp_path):
    metrics = train(
        tokens, tmp_path, "trainer.max_steps=30", "trainer.device=cuda",
        "trainer.precision=bf16",
    )  # fmt: skip
    assert metrics["bits_per_token"] < 5.0
    assert load_lm(tmp_path / "export").cfg.codebook_size == 32


def test_torchrun_two_cpu_processes(tokens, tmp_path):
    """`torchrun --nproc-per-node 2 -m focalcodec lm train` trains with DDP on gloo."""
    run_dir = tmp_path / "ddp"
    args = [f"data.source={tokens}", f"run_dir={run_dir}", *TINY, "trainer.max_steps=6"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "focalcodec", "lm", "train", *args]  # fmt: skip
    # A session of its own, so that a hang is ended with every worker it started.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[:3000] + " ... " + stderr[-2000:]
    assert (run_dir / "export" / "model.safetensors").is_file()
    assert (run_dir / "metrics.csv").is_file()
    assert "bits_per_token=" in stdout
