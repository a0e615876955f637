"""Helpers shared by the test modules (import as ``support``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_CASES = [
    "noncausal_vocos_50hz",
    "noncausal_vocos_12_5hz_legacy",
    "causal_wavenext_50hz",
    "causal_vocos_25hz_postnorm",
]
# Worst float error per golden case and tensor, printed at the end of the run.
PARITY_REPORT: dict[str, dict[str, float]] = {}


def _shared() -> Path:
    path = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared")).resolve()
    if not (path / "golden").is_dir():
        pytest.fail(
            f"the shared test data folder is missing: expected {path} with golden/, "
            "manifests/ and audio/ (set FOCALCODEC_SHARED to its location)",
            pytrace=False,
        )
    return path
