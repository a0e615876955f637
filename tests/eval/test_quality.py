"""DNSMOS through speechmos: clean speech scores above a noisy copy."""

from __future__ import annotations

import numpy as np
import pytest

from focalcodec.eval.base import EvalItem, MetricModels
from focalcodec.eval.quality import DNSMOS
from focalcodec.files.audio import load_audio


def test_dnsmos_prefers_clean_speech(data_dir):
    for module in ("speechmos", "onnxruntime", "librosa"):
        pytest.importorskip(module)
    path = (
        data_dir / "audio" / "librispeech" / "dev-clean" / "84" / "84-121123-0001.flac"
    )
    # 2.3 s: speechmos loops it to 9.2 s, one 9 s window, so the test stays fast.
    clean = load_audio(path, 16000).sig[: int(2.3 * 16000)]
    noise = np.random.default_rng(0).standard_normal(clean.size).astype(np.float32)
    noisy = clean + 0.1 * noise * np.abs(clean).max()
    metric = DNSMOS()
    metric.setup(MetricModels())
    rows = metric.score(
        [EvalItem("clean", clean, clean), EvalItem("noisy", clean, noisy)]
    )
    for row in rows:
        assert set(row) == set(DNSMOS.columns)
        assert all(1.0 <= v <= 5.0 for v in row.values())
    assert rows[0]["dnsmos_ovrl"] > rows[1]["dnsmos_ovrl"]
    assert rows[0]["dnsmos_bak"] > rows[1]["dnsmos_bak"]
