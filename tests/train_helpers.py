"""Helpers shared by the training tests: short real-speech clips, tiny configs, a toy stage."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from focalcodec.train.config import TrainConfig, load_config
from focalcodec.train.stage import DataSpec, Stage

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Small enough for CPU unit tests, large enough for every discriminator.
FAST = [
    "data.batch_size=2",
    "data.crop_samples=4800",
    "data.train_split=null",
    "data.valid_split=null",
    "data.valid_fraction=0.2",
    "data.max_valid_items=1",
    "data.valid_max_seconds=0.6",
    "data.cache_features=false",
    "log.every=1",
    "log.progress=false",
    "trainer.max_steps=4",
    "trainer.valid_every=0",
    "trainer.checkpoint_every=2",
    "trainer.num_samples=1",
    "discriminator.periods=[2,3]",
    "discriminator.period_channels=[4,8]",
    "discriminator.resolutions=[[256,64,256]]",
    "discriminator.resolution_channels=4",
    "loss.mel.n_fft=512",
    "loss.mel.hop_length=128",
    "loss.mel.n_mels=32",
]


def speech_clips(
    shared: Path, folder: Path, count: int = 6, seconds: float = 0.6
) -> Path:
    """Write ``count`` short clips cut from real training speech into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (shared / "audio" / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows = [r for r in rows if r["split"] == "train" and r["sample_rate"] == 16000]
    for i, row in enumerate(rows[:count]):
        data, rate = sf.read(shared / "audio" / row["path"], dtype="float32")
        start = len(data) // 3
        clip = data[start : start + int(seconds * rate)]
        sf.write(folder / f"clip{i}.wav", clip, rate)
    return folder


def tiny_config(
    stage: str, run_dir: Path, source: Path, model: Path, *extra: str
) -> TrainConfig:
    """A repo tiny recipe made fast, with the model architecture ``model``."""
    name = {"causal-encoder": "causal_encoder"}.get(stage, stage)
    overrides = [
        f"run_dir={run_dir}",
        f"data.source={source}",
        f"model.config={model}",
        *FAST,
        *extra,
    ]
    return load_config(CONFIGS / "tiny" / f"{name}.yaml", overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ToyData(Dataset):
    """Linear-regression pairs ``y = x @ w + noise``, fixed by a seed."""

    input_rate = None

    def __init__(self, size: int = 24) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.randn(size, 4, generator=gen)
        weight = torch.randn(4, 1, generator=gen)
        self.y = self.x @ weight + 0.01 * torch.randn(size, 1, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


def toy_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class ToyStage(Stage):
    """A two-layer regressor with dropout, trained through the real loop."""

    name = "quantizer"

    def __init__(self, cfg: TrainConfig, device: torch.device, dropout: float = 0.2):
        super().__init__(cfg, device)
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Linear(4, 16), nn.Dropout(dropout), nn.ReLU(), nn.Linear(16, 1)
        )
        self.nets = {"net": net.to(device)}
        self.seen_dtypes: set[torch.dtype] = set()

    def data_spec(self) -> DataSpec:
        return DataSpec(input_rate=16000, hop=1)

    def optim_groups(self):
        return {"net": (list(self.nets["net"].parameters()), self.cfg.optim)}

    def train_step(self, batch, ctx):
        with ctx.autocast():
            pred = self.runners["net"](batch["x"])
        self.seen_dtypes.add(pred.dtype)
        loss = F.mse_loss(pred.float(), batch["y"])
        return {"loss": float(loss.detach()), **ctx.optimize("net", loss)}

    def valid_step(self, batch):
        return {"mse": float(F.mse_loss(self.nets["net"](batch["x"]), batch["y"]))}

    def export(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file(self.nets["net"].state_dict(), str(folder / "net.safetensors"))


def toy_config(run_dir: Path, *extra: str) -> TrainConfig:
    return load_config(
        None,
        [
            "stage=quantizer",
            f"run_dir={run_dir}",
            "data.batch_size=4",
            "log.every=1",
            "log.progress=false",
            "trainer.device=cpu",
            "trainer.max_steps=10",
            "trainer.valid_every=0",
            "trainer.checkpoint_every=4",
            "trainer.keep_checkpoints=10",
            "optim.lr=0.01",
            "optim.scheduler=exponential",
            "optim.gamma=0.9",
            "optim.interval=epoch",
            *extra,
        ],
    )


def ddp_toy_worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    """One process of a 2-process gloo run of the toy stage (for mp.spawn)."""
    from focalcodec import runtime as distributed
    from focalcodec.train.trainer import Trainer

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    cfg = toy_config(Path(run_dir), "data.batch_size=2", "trainer.max_steps=6")
    info = distributed.setup("cpu")
    try:
        stage = ToyStage(cfg, info.device, dropout=0.0)
        trainer = Trainer(stage, cfg, info, ToyData(), None, collate_fn=toy_collate)
        trainer.fit()
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in stage.nets["net"].state_dict().items()}
        save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        distributed.cleanup()


def assert_same_state(a: dict, b: dict) -> None:
    """Recursively require equal nested containers of tensors and numbers."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b, (a, b)
