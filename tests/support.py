"""Helpers shared by the test modules (import as ``support``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN_CASES = [
    "noncausal_vocos_50hz",
    "noncausal_vocos_12_5hz_legacy",
    "causal_wavenext_50hz",
    "causal_vocos_25hz_postnorm",
]
# Worst float error per golden case and tensor, printed at the end of the run.
PARITY_REPORT: dict[str, dict[str, float]] = {}


DATA = Path(__file__).resolve().parent / "data"


def shared_path() -> Path | None:
    """The optional larger data folder (``../shared`` or ``$FOCALCODEC_SHARED``)."""
    path = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared")).resolve()
    return path if (path / "audio" / "manifest.jsonl").is_file() else None


# -- ONNX exports of the golden models (the ONNX tests import onnxruntime first) ------

AUDIO_TOL = 1e-5
CAUSAL = [c for c in GOLDEN_CASES if c.startswith("causal")]
_EXPORTS: dict[str, tuple] = {}


def exported(tmp_path_factory, golden_dir: Path, case: str):
    """(codec, export dir, manifest) for a golden case, exported once per test session.

    Shared by the ONNX tests through the session's base temp folder.
    """
    if case not in _EXPORTS:
        from focalcodec import FocalCodec
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
