"""Evaluation of FocalCodec models: metrics, the batch runner and ``focalcodec eval``.

Importing this package registers the built-in metrics; none of them imports its heavy
package (pystoi, pesq, resemblyzer, speechmos, faster-whisper) until it is set up, so the
package imports with the core dependencies alone.
"""

from . import asr, quality, speaker, waveform  # noqa: F401  (register built-in metrics)
from .base import (
    EVAL_RATE,
    EvalError,
    EvalItem,
    Metric,
    MetricModels,
    MetricUnavailable,
    available_metrics,
    create_metric,
    load_plugin,
    register_metric,
)
from .tokens import TokenStats, code_usage, normalized_entropy

__all__ = [
    "EVAL_RATE",
    "EvalError",
    "EvalItem",
    "Metric",
    "MetricUnavailable",
    "MetricModels",
    "TokenStats",
    "available_metrics",
    "code_usage",
    "create_metric",
    "load_plugin",
    "normalized_entropy",
    "register_metric",
]
