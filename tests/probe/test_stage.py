"""The probe stage in the shared trainer, on synthetic token sequences: CTC learns to
read them and greedy decoding gives them back."""

from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader

from focalcodec import runtime as distributed
from focalcodec.probe.config import load_probe_config, train_config
from focalcodec.probe.data import ProbeDataset, probe_collate
from focalcodec.probe.metrics import asr_scores
from focalcodec.probe.nets import ProbeNet
from focalcodec.probe.stage import ProbeStage, predict
from focalcodec.probe.units import CharUnits
from focalcodec.train.trainer import Trainer

LOCAL = distributed.DistInfo(0, 1, 0, torch.device("cpu"))
UNITS = CharUnits("abcd")


def sequences(count: int, seed: int):
    """Texts of 2-5 letters; letter k is 3-6 frames drawn from tokens 4k..4k+3."""
    rng = random.Random(seed)
    texts, toks = [], []
    for _ in range(count):
        text = rng.choice("abcd")
        while len(text) < rng.randint(2, 5):
            text += rng.choice([c for c in "abcd" if c != text[-1]])
        frames = []
        for letter in text:
            k = "abcd".index(letter)
            frames += [4 * k + rng.randrange(4) for _ in range(rng.randint(3, 6))]
        texts.append(text)
        toks.append(torch.tensor(frames))
    return texts, toks


def dataset(texts, toks):
    keys = [str(i) for i in range(len(texts))]
    table = dict(zip(keys, toks, strict=True))
    return ProbeDataset(keys, table.__getitem__, [UNITS.encode(t) for t in texts])


def test_ctc_probe_reads_token_sequences(tmp_path):
    cfg = load_probe_config(
        None,
        [
            "task=asr",
            "net.hidden=32",
            "net.layers=1",
            "optim.lr=0.01",
            "data.batch_size=8",
            "trainer.max_epochs=12",
            "trainer.device=cpu",
        ],
    )
    codes = (torch.rand(16, 4) > 0.5).float() * 2 - 1
    torch.manual_seed(0)
    net = ProbeNet(
        UNITS.size + 1, pooled=False, codebook=codes / 2, hidden=32, layers=1
    )
    stage = ProbeStage(train_config(cfg, tmp_path), LOCAL.device, net, "asr")
    train, valid, test = (
        dataset(*sequences(n, s)) for n, s in ((160, 0), (24, 1), (40, 2))
    )
    trainer = Trainer(stage, stage.cfg, LOCAL, train, valid, collate_fn=probe_collate)
    trainer.fit()
    texts, _ = sequences(40, 2)
    loader = DataLoader(test, batch_size=16, collate_fn=probe_collate)
    hyps = [
        UNITS.decode(p)
        for p in predict(stage.nets["probe"], loader, LOCAL.device, "asr")
    ]
    scores = asr_scores(texts, hyps)
    assert scores["test_cer"] <= 0.05, scores["examples"]
    history = trainer.monitor.history
    assert history[-1]["valid_error_rate"] < history[0]["valid_error_rate"]
