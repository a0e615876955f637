"""Speaker similarity: the metric logic with a fake embedder, Resemblyzer on real speech."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalcodec.eval.base import EvalItem, MetricModels
from focalcodec.eval.speaker import SpeakerSimilarity, cosine
from focalcodec.files.audio import load_audio


class FakeEmbedder:
    """Embeds a waveform as its first two samples (so tests pick the geometry)."""

    def __init__(self):
        self.calls = 0

    def embed(self, wavs):
        self.calls += len(wavs)
        return np.stack([np.asarray(w[:2], dtype=np.float32) for w in wavs])


def test_cosine():
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert math.isnan(cosine(np.zeros(2), np.ones(2)))


def test_reconstruction_compares_with_the_original():
    metric = SpeakerSimilarity(FakeEmbedder())
    metric.setup(MetricModels())
    ref = np.array([1.0, 0.0], dtype=np.float32)
    rows = metric.score(
        [EvalItem("a", ref, ref.copy()), EvalItem("b", ref, np.array([1.0, 1.0]))]
    )
    assert rows[0]["spk_sim"] == pytest.approx(1.0)
    assert rows[1]["spk_sim"] == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(rows[0]["spk_sim_src"])


def test_conversion_compares_with_the_target_set_and_reports_the_source():
    embedder = FakeEmbedder()
    metric = SpeakerSimilarity(embedder)
    metric.setup(MetricModels())
    source = np.array([1.0, 0.0], dtype=np.float32)
    targets = [np.array([0.0, 1.0]), np.array([0.0, 3.0])]
    item = EvalItem("a", source, np.array([0.0, 2.0]), targets, "spk2")
    row = metric.score([item, item])[0]
    assert row["spk_sim"] == pytest.approx(1.0)
    assert row["spk_sim_src"] == pytest.approx(0.0)
    # The target set and the source were embedded once for the two items.
    assert embedder.calls == 1 + 2 + 2


@pytest.fixture(scope="module")
def voices(shared_dir):
    root = shared_dir / "audio" / "librispeech" / "dev-clean"
    paths = [
        "84/84-121123-0001.flac",
        "84/84-121123-0004.flac",
        "251/251-118436-0003.flac",
    ]
    return [load_audio(root / p, 16000).sig[: 5 * 8000] for p in paths]


def test_resemblyzer_separates_speakers_and_detects_damage(voices):
    pytest.importorskip("resemblyzer")
    metric = SpeakerSimilarity()
    metric.setup(MetricModels())
    a1, a2, b = voices
    noisy = a1 + 0.05 * np.random.default_rng(0).standard_normal(a1.size).astype(
        np.float32
    )
    rows = metric.score(
        [
            EvalItem("same", a1, a1),
            EvalItem("noisy", a1, noisy),
            EvalItem("other-utt", a1, a2),
            EvalItem("other-spk", a1, b),
        ]
    )
    sims = {
        key: row["spk_sim"]
        for key, row in zip(
            ("same", "noisy", "other-utt", "other-spk"), rows, strict=True
        )
    }
    assert sims["same"] == pytest.approx(1.0, abs=1e-5)
    assert sims["noisy"] < sims["same"]
    assert sims["other-utt"] > sims["other-spk"]
