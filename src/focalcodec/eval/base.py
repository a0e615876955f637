"""The metric interface, the registry of metric factories and what metrics share.

A metric scores a batch of :class:`EvalItem` (an original waveform and what the codec made
of it, both at :data:`EVAL_RATE`) and returns one row of numbers per item. Heavy metrics
load their model in :meth:`Metric.setup` through :class:`MetricModels`, so two metrics
that need the same network (speaker similarity to the original and to a voice-conversion
target, say) load it once. A metric whose package is missing raises
:class:`MetricUnavailable` from ``setup``; the runner then drops it with one warning and
lists it in the report.

Third-party metrics (UTMOS, a WavLM speaker verifier, ...) plug in by calling
:func:`register_metric`, by a ``module:factory`` spec given to :func:`load_plugin` (the
``--plugin`` option of ``focalcodec eval``), or by an entry point in the
``focalcodec.metrics`` group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EvalError, MetricUnavailable

__all__ = [
    "EVAL_RATE",
    "EvalError",
    "EvalItem",
    "Metric",
    "MetricUnavailable",
    "MetricModels",
    "available_metrics",
    "create_metric",
    "load_plugin",
    "register_metric",
]

# Every metric sees 16 kHz audio: PESQ wideband, DNSMOS, Whisper and Resemblyzer all
# expect it, and it is the codec's input rate, so the original is never resampled.
EVAL_RATE = 16000

Row = dict[str, Any]


@dataclass
class EvalItem:
    """One utterance to score.

    Attributes
    ----------
    key
        Unique name of the utterance (its path relative to the data set root).
    ref
        The original waveform, shape (N,), float32 at :data:`EVAL_RATE`.
    est
        The codec output, shape (N',), float32 at :data:`EVAL_RATE`. Reconstructions are
        cut or zero-padded to N by the runner; voice conversion keeps its own length.
    speaker_refs
        Waveforms of the speaker the output should sound like, each (N_i,). Empty means
        the speaker of ``ref`` (reconstruction). Voice conversion puts the target
        speaker's reference set here.
    speaker_key
        Name of the ``speaker_refs`` set (e.g. the target speaker id), so that metrics
        can cache what they compute from it; required when ``speaker_refs`` is given.
    """

    key: str
    ref: np.ndarray
    est: np.ndarray
    speaker_refs: Sequence[np.ndarray] = field(default_factory=tuple)
    speaker_key: str = ""


class MetricModels:
    """Models and per-utterance results shared by every metric of one run.

    Values are built on first use by a factory and kept until the run ends, so a model is
    loaded once however many metrics or codecs use it, and the transcript or speaker
    embedding of an original is computed once however many codecs are compared.
    """

    def __init__(self) -> None:
        self._store: dict[Hashable, Any] = {}

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        """Return the value under ``key``, building it with ``factory()`` if absent."""
        if key not in self._store:
            self._store[key] = factory()
        return self._store[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store


class Metric:
    """Base class of a metric: subclasses set the class attributes and :meth:`score`.

    Attributes
    ----------
    name
        Registry name, used on the command line (``--metrics stoi,pesq``).
    columns
        Names of the numbers :meth:`score` returns per item, in display order.
    higher_is_better
        For each column, whether larger is better (drives the arrows of the table).
    intrusive
        True when the metric compares ``est`` sample by sample with ``ref``, which makes
        no sense for voice conversion; the runner uses such metrics only on
        reconstructions.
    """

    name: str = ""
    columns: tuple[str, ...] = ()
    higher_is_better: dict[str, bool] = {}
    intrusive: bool = True

    def setup(self, cache: MetricModels) -> None:
        """Import packages and load models; raise :class:`MetricUnavailable` if missing.

        Parameters
        ----------
        cache
            Shared store for loaded models.
        """

    def score(self, items: Sequence[EvalItem]) -> list[Row]:
        """Score a batch of items.

        Parameters
        ----------
        items
            Items to score, all at :data:`EVAL_RATE`.

        Returns
        -------
            One dict per item mapping each of :attr:`columns` (and possibly extra
            fields such as transcripts) to its value; NaN where the item cannot be
            scored.
        """
        raise NotImplementedError

    def summarize(self, rows: Sequence[Row]) -> dict[str, float]:
        """Aggregate per-item rows into one number per column.

        The default is the mean over finite values. Corpus-level metrics (error rates)
        override it.

        Parameters
        ----------
        rows
            Rows returned by :meth:`score` over the whole data set.

        Returns
        -------
            Column name to summary value (NaN when no item had a finite value).
        """
        return {col: finite_mean(row.get(col) for row in rows) for col in self.columns}


def finite_mean(values: Any) -> float:
    """Mean of the finite numbers among ``values``; NaN if there are none."""
    kept = [float(v) for v in values if _is_finite_number(v)]
    return float(np.mean(kept)) if kept else math.nan


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(
        float(value)
    )


_REGISTRY: dict[str, Callable[[], Metric]] = {}
_ENTRY_POINT_GROUP = "focalcodec.metrics"


def register_metric(
    name: str, factory: Callable[[], Metric] | None = None, *, replace: bool = False
) -> Any:
    """Register a metric factory under ``name``; usable as a decorator.

    Parameters
    ----------
    name
        Name used in ``--metrics``.
    factory
        A callable (usually the class) that returns a :class:`Metric` without loading
        any model; models load in :meth:`Metric.setup`.
    replace
        Allow replacing an existing registration.

    Returns
    -------
        ``factory``, or a decorator when ``factory`` is omitted.
    """

    def _add(fn: Callable[[], Metric]) -> Callable[[], Metric]:
        if name in _REGISTRY and not replace and _REGISTRY[name] is not fn:
            raise EvalError(f"metric {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return _add(factory) if factory is not None else _add


# Built-in metrics in the order the tables show them: signal fidelity, then content,
# speaker and perceived quality. Plugins follow in alphabetical order.
_DISPLAY_ORDER = ("stoi", "pesq", "sisdr", "mel", "mrstft", "asr", "speaker", "dnsmos")


def available_metrics() -> list[str]:
    """Names of all registered metrics (built-in first, then plugins by name)."""
    _load_entry_points()
    builtin = [name for name in _DISPLAY_ORDER if name in _REGISTRY]
    return builtin + sorted(set(_REGISTRY) - set(builtin))


def create_metric(name: str) -> Metric:
    """Instantiate the metric registered as ``name`` (no model is loaded yet)."""
    _load_entry_points()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise EvalError(f"unknown metric {name!r}; known metrics: {known}")
    return _REGISTRY[name]()


def load_plugin(spec: str) -> str:
    """Import ``module:attr`` and register the metric factory it names.

    Parameters
    ----------
    spec
        ``package.module:FactoryName``; the module must be importable (on ``sys.path``).
        Importing a module that calls :func:`register_metric` itself is enough too:
        give just ``package.module``.

    Returns
    -------
        The name the metric is registered under (for a bare module, the spec).
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EvalError(
            f"plugin {spec!r}: cannot import {module_name!r} ({exc})"
        ) from exc
    if not attr:
        return spec
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise EvalError(f"plugin {spec!r}: {module_name} has no callable {attr!r}")
    name = getattr(factory, "name", "") or attr.lower()
    register_metric(name, factory, replace=True)
    return name


_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=_ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = _deferred(entry)


def _deferred(entry: importlib.metadata.EntryPoint) -> Callable[[], Metric]:
    # The plugin module is imported only when its metric is requested, so a broken
    # third-party package cannot break `focalcodec eval` for everyone else.
    def build() -> Metric:
        try:
            return entry.load()()
        except Exception as exc:
            raise MetricUnavailable(f"plugin {entry.value!r} failed: {exc}") from exc

    return build
