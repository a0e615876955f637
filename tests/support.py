"""The one helpers module of the test suite (import as ``support``).

Sections: where the data is; the golden cases; real speech; comparing tensors; .fcz
bytes written by hand; the command line; ONNX exports of the golden models; a stand-in codec for the evaluation
runner; toys and tiny recipes for the training tests. Fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from focalcodec import FocalCodec
from focalcodec.train.config import TrainConfig, load_config
from focalcodec.train.stage import DataSpec, Stage

# -- where the data is ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CONFIGS = REPO / "configs"
GOLDEN_CASES = [
    "noncausal_vocos_50hz",
    "noncausal_vocos_12_5hz_legacy",
    "causal_wavenext_50hz",
    "causal_vocos_25hz_postnorm",
]
CAUSAL = [c for c in GOLDEN_CASES if c.startswith("causal")]
NONCAUSAL = [c for c in GOLDEN_CASES if c.startswith("noncausal")]


def shared_path() -> Path | None:
    """The optional larger data folder (``../shared`` or ``$FOCALCODEC_SHARED``)."""
    path = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared")).resolve()
    return path if (path / "audio" / "manifest.jsonl").is_file() else None


# -- the golden cases ------------------------------------------------------------------

# Worst float error per golden case and tensor, printed at the end of the run.
PARITY_REPORT: dict[str, dict[str, float]] = {}


class Golden(NamedTuple):
    """A golden case: the tiny model, the reference's tensors and their metadata."""

    codec: FocalCodec
    io: dict[str, torch.Tensor]
    meta: dict[str, str]
    name: str
    path: Path


_GOLDEN: dict[str, Golden] = {}


def load_golden(case: str) -> Golden:
    """Load a golden case of ``tests/data/golden`` once per test session.

    The model is shared by every test that asks for the case: tests that change a model
    (training mode, fast modes, patched attributes) load their own copy.
    """
    if case not in _GOLDEN:
        path = DATA / "golden" / case
        codec = FocalCodec.from_pretrained(path).eval()
        io = load_file(str(path / "io.safetensors"))
        with safe_open(str(path / "io.safetensors"), "pt") as f:
            meta = f.metadata() or {}
        _GOLDEN[case] = Golden(codec, io, meta, case, path)
    return _GOLDEN[case]


# -- real speech -----------------------------------------------------------------------

AUDIO = DATA / "audio"
CLEAN = "librispeech/dev-clean/84/84-121123-0000.flac"  # 2.09 s, 16 kHz
NOISY = "noisy/p257_003.flac"  # 48 kHz
CLIPS = [CLEAN, "multilingual/it/agent-loggedoff.flac"]  # 2.09 s and 1.33 s, 16 kHz


def speech(name: str = CLEAN, seconds: float | None = None) -> np.ndarray:
    """A clip of ``tests/data/audio`` as float32 (N,) at its own rate, cut to ``seconds``."""
    sig, rate = sf.read(AUDIO / name, dtype="float32")
    sig = sig.mean(axis=1, dtype=np.float32) if sig.ndim == 2 else sig
    return sig if seconds is None else sig[: int(seconds * rate)]


def speech_clips(
    data: Path, folder: Path, count: int = 6, seconds: float = 0.6
) -> Path:
    """Write ``count`` short clips cut from the 16 kHz training speech of ``data``.

    ``data`` is ``tests/data`` or ``../shared``: any folder with ``audio/manifest.jsonl``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = (data / "audio" / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows = [r for r in rows if r["split"] == "train" and r["sample_rate"] == 16000]
    for i, row in enumerate(rows[:count]):
        sig, rate = sf.read(data / "audio" / row["path"], dtype="float32")
        start = len(sig) // 3
        sf.write(
            folder / f"clip{i}.wav", sig[start : start + int(seconds * rate)], rate
        )
    return folder


def rel_files(root: Path) -> list[str]:
    """Every file under ``root``, as sorted POSIX paths relative to it."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    )


# -- comparing tensors -----------------------------------------------------------------


def max_abs(a: Any, b: Any) -> float:
    """Largest absolute difference of two tensors or arrays of the same shape."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def snr_db(ref: Any, test: Any) -> float:
    """Signal-to-noise ratio of ``test`` against ``ref``, in dB."""
    ref, test = np.asarray(ref, dtype=np.float64), np.asarray(test, dtype=np.float64)
    assert ref.shape == test.shape, (ref.shape, test.shape)
    noise = np.sum((ref - test) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


# -- .fcz bytes written by hand -------------------------------------------------------


def varint(value: int) -> bytes:
    """Unsigned LEB128 (docs/format.md), written here independently of the library."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# -- the command line ------------------------------------------------------------------


def run_cli(*args: Any) -> int:
    """``focalcodec ARGS...`` in this process; paths and numbers are turned into text."""
    from focalcodec.cli import main

    return main([str(a) for a in args])


def one_line_error(capsys, *, prefix: bool = False, quiet_stdout: bool = False) -> str:
    """The captured stderr, required to be one line with no traceback; returned.

    ``prefix`` also requires the ``focalcodec: error:`` prefix of the CLI's messages,
    ``quiet_stdout`` an empty stdout.
    """
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    if prefix:
        assert err.startswith("focalcodec: error:"), err
    if quiet_stdout:
        assert not captured.out, captured.out
    return err


# -- ONNX exports of the golden models (the ONNX tests import onnxruntime first) ------

AUDIO_TOL = 1e-5
_EXPORTS: dict[str, tuple] = {}


def exported(tmp_path_factory, golden_dir: Path, case: str):
    """(codec, export dir, manifest) for a golden case, exported once per test session.

    Shared by the ONNX tests through the session's base temp folder.
    """
    if case not in _EXPORTS:
        from focalcodec.deploy.onnx_export import export_onnx

        codec = FocalCodec.from_pretrained(golden_dir / case).eval()
        out = tmp_path_factory.getbasetemp() / "onnx_exports" / case
        if (out / "manifest.json").is_file():
            manifest = json.loads((out / "manifest.json").read_text())
        else:
            manifest = export_onnx(codec, out)
        _EXPORTS[case] = codec, out, manifest
    return _EXPORTS[case]


def without_stream_graphs(export: Path, out: Path) -> Path:
    """Copy ``export`` into ``out`` as ``export --no-streaming`` writes it: no step graphs."""
    manifest = json.loads((export / "manifest.json").read_text())
    for name in ("stream_encoder", "stream_decoder"):
        del manifest["graphs"][name]
    for spec in manifest["graphs"].values():
        shutil.copy(export / spec["file"], out / spec["file"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


# -- a stand-in codec for the evaluation runner ----------------------------------------


class FakeCodec:
    """Tokens are the quantised RMS of 20 ms frames; decoding makes a tone at that level.

    It has the FocalCodec conversion methods and properties the runner uses, counts its
    calls, and outputs 24 kHz (so the runner's resampling to 16 kHz is exercised).
    """

    sample_rate_input = 16000
    sample_rate_output = 24000
    codebook_size = 16
    bits_per_token = 4
    token_rate = 50.0
    hop = 320
    model_id = "fake"
    causal = False
    latency = None

    def __init__(self) -> None:
        self.encoded = 0
        self.matching_sets: list[torch.Tensor | None] = []

    def to(self, device):
        return self

    def eval(self):
        return self

    def config_hash(self) -> str:
        return "fa4e"

    def sig_to_toks(self, sig: torch.Tensor) -> torch.Tensor:
        self.encoded += 1
        frames = -(-sig.shape[-1] // self.hop)
        padded = F.pad(sig, (0, frames * self.hop - sig.shape[-1]))
        rms = padded.reshape(sig.shape[0], frames, self.hop).square().mean(-1).sqrt()
        return torch.clamp((rms * 60).long(), 0, self.codebook_size - 1)

    def sig_to_feats(self, sig: torch.Tensor) -> torch.Tensor:
        frames = sig.shape[-1] // self.hop
        return torch.ones(sig.shape[0], frames, 8)

    def toks_to_sig(self, toks, output_length=None, matching_set=None, topk=4):
        self.matching_sets.append(matching_set)
        hop = self.hop * self.sample_rate_output // self.sample_rate_input
        level = toks.float().repeat_interleave(hop, dim=-1) / 60
        t = torch.arange(level.shape[-1]) / self.sample_rate_output
        sig = level * np.sqrt(2) * torch.sin(2 * torch.pi * 200 * t)
        if output_length is not None:
            sig = sig[..., :output_length]
        return sig


# -- training: tiny recipes on the golden architectures, and a toy stage ---------------

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


def join_local_group(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world`` on this host, and one
    thread per process (the test machine has two cores)."""
    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)


def ddp_toy_worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    """One process of a 2-process gloo run of the toy stage (for mp.spawn)."""
    from safetensors.torch import save_file

    from focalcodec import runtime
    from focalcodec.train.trainer import Trainer

    join_local_group(rank, world, port)
    cfg = toy_config(Path(run_dir), "data.batch_size=2", "trainer.max_steps=6")
    info = runtime.setup("cpu")
    try:
        stage = ToyStage(cfg, info.device, dropout=0.0)
        trainer = Trainer(stage, cfg, info, ToyData(), None, collate_fn=toy_collate)
        trainer.fit()
        state = {k: v.contiguous() for k, v in stage.nets["net"].state_dict().items()}
        save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        runtime.cleanup()


def assert_same_state(a: Any, b: Any) -> None:
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


# -- long audio files made of the in-repo speech clips ----------------------------------


def speech_file(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Write ``seconds`` of real speech (the clips of tests/data/audio, tiled) to
    ``path`` at ``rate`` Hz, mono 16-bit; returns ``path``."""
    from focalcodec.files.audio import load_audio

    clips = sorted((DATA / "audio").rglob("*.flac"))
    sig = np.concatenate([load_audio(c, rate).sig for c in clips])
    want = round(seconds * rate)
    sig = np.tile(sig, -(-want // len(sig)))[:want]
    sf.write(path, np.clip(sig, -1, 1), rate, subtype="PCM_16")
    return path


# -- synthetic data the probe tests can learn (or must not) ---------------------------

# Pitches with a non-integer number of cycles per 20 ms frame, so each clip sweeps
# every phase and its tokens depend on the pitch, not on the random start phase (the
# tiny random golden codecs are phase-sensitive).
TONE_PITCHES = (130, 410, 1310, 4170)


def write_tones(folder: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Tone clips (0.8-1.2 s, random phase, faint noise) and their manifest.

    Fields: ``pitch`` (the class the tokens encode), ``shuffled`` (a random label
    unrelated to the audio) and, for ASR, ``text``: each clip of the ``seq_*`` items
    is 2-4 segments of 0.5 s, one letter (a-d) per pitch. Written once per folder.

    Returns
    -------
        The manifest path.
    """
    import numpy as np
    import soundfile as sf

    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate = 16000

    def tone(freq: float, seconds: float) -> np.ndarray:
        t = np.arange(int(rate * seconds)) / rate
        phase = rng.uniform(0, 2 * np.pi)
        return 0.3 * np.sin(2 * np.pi * freq * t + phase)

    rows = []
    for freq in TONE_PITCHES:
        for i in range(per_class):
            sig = tone(freq, rng.uniform(0.8, 1.2))
            sig = sig + 0.01 * rng.standard_normal(len(sig))
            name = f"tone{freq}_{i:02d}.wav"
            sf.write(folder / name, sig.astype(np.float32), rate)
            label = str(int(rng.integers(len(TONE_PITCHES))))
            rows.append({"path": name, "pitch": str(freq), "shuffled": label})
    for i in range(per_class * 3):
        # No pitch twice in a row: CTC would need the segment length to count them.
        count, picks = int(rng.integers(2, 5)), [int(rng.integers(4))]
        while len(picks) < count:
            picks.append((picks[-1] + int(rng.integers(1, 4))) % 4)
        sig = np.concatenate([tone(TONE_PITCHES[p], 0.5) for p in picks])
        sig = sig + 0.01 * rng.standard_normal(len(sig))
        name = f"seq_{i:02d}.wav"
        sf.write(folder / name, sig.astype(np.float32), rate)
        rows.append({"path": name, "text": "".join("abcd"[p] for p in picks)})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def ddp_probe_worker(rank: int, world: int, port: int, args: tuple) -> None:
    """One process of a 2-process gloo probe run (for ``mp.spawn``).

    ``args``: (manifest, output folder, cache folder, model, summary folder); each rank
    writes the summary it got back as ``rank<r>.json``.
    """

    from focalcodec.probe import ProbeJob, load_probe_config, run_probe

    manifest, out, cache, model, summaries = args
    join_local_group(rank, world, port)
    cfg = load_probe_config(
        None,
        [
            f"data.manifest={manifest}",
            "data.label=pitch",
            f"data.cache_dir={cache}",
            "data.batch_size=8",
            "net.hidden=16",
            "net.layers=1",
            "trainer.max_epochs=2",
            "trainer.device=cpu",
            "log.progress=false",
        ],
    )
    summary = run_probe(ProbeJob(cfg, [model], Path(out), progress=False))
    Path(summaries, f"rank{rank}.json").write_text(json.dumps(summary))
