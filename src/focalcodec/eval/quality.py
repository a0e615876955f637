"""Non-intrusive quality estimate: DNSMOS P.835 through ``speechmos``.

DNSMOS (Reddy et al., 2022) predicts, from the output alone, the mean opinion scores a
listening panel would give on a 1-5 scale: speech quality (SIG), background noise (BAK),
overall (OVRL), plus the older P.808 overall score. The ONNX models ship inside the
``speechmos`` wheel; they need ``onnxruntime`` and ``librosa``. Clips shorter than 9 s are
looped to 9 s by speechmos, longer ones are scored in 9 s windows with a 1 s hop.

The paper's UTMOS needs weights from the Hugging Face Hub; add it with a plugin metric
(see docs/eval.md) where those weights are available.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .base import EVAL_RATE, EvalItem, Metric, MetricModels, MetricUnavailable, Row
from .base import register_metric as _register

__all__ = ["DNSMOS"]

_COLUMNS = {
    "ovrl_mos": "dnsmos_ovrl",
    "sig_mos": "dnsmos_sig",
    "bak_mos": "dnsmos_bak",
    "p808_mos": "dnsmos_p808",
}


def _load_dnsmos() -> object:
    try:
        import speechmos
        from speechmos.dnsmos import DNSMOS as _Model
    except ImportError as exc:
        raise MetricUnavailable(
            f"needs speechmos, onnxruntime and librosa ({exc}); "
            "pip install 'focalcodec[eval-models]'"
        ) from exc
    root = os.path.dirname(os.path.abspath(speechmos.__file__))
    primary = os.path.join(root, "dnsmos_models", "sig_bak_ovr.onnx")
    p808 = os.path.join(root, "dnsmos_models", "model_v8.onnx")
    for path in (primary, p808):
        if not os.path.isfile(path):
            raise MetricUnavailable(f"speechmos is installed without {path}")
    return _Model(primary, p808)


@_register("dnsmos")
class DNSMOS(Metric):
    """DNSMOS SIG / BAK / OVRL and P.808 MOS of the output (higher is better)."""

    name = "dnsmos"
    columns = tuple(_COLUMNS.values())
    higher_is_better = dict.fromkeys(_COLUMNS.values(), True)
    intrusive = False

    def __init__(self) -> None:
        self._model = None

    def setup(self, cache: MetricModels) -> None:
        self._model = cache.get(("dnsmos",), _load_dnsmos)

    def score(self, items: Sequence[EvalItem]) -> list[Row]:
        assert self._model is not None, "setup() was not called"
        rows = []
        for item in items:
            # speechmos rejects samples outside [-1, 1]; a decoder can overshoot.
            wav = np.clip(np.asarray(item.est, dtype=np.float32), -1.0, 1.0)
            scores = self._model(wav, EVAL_RATE, False)
            rows.append({col: float(scores[key]) for key, col in _COLUMNS.items()})
        return rows
