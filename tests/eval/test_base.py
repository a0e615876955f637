"""The metric registry, plugins and the shared model cache."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest

from focalcodec.eval import base
from focalcodec.eval.base import (
    EvalError,
    Metric,
    MetricModels,
    available_metrics,
    create_metric,
    finite_mean,
    load_plugin,
    register_metric,
)


def test_builtin_metrics_are_registered():
    names = set(available_metrics())
    assert {
        "sisdr",
        "stoi",
        "pesq",
        "mel",
        "mrstft",
        "speaker",
        "asr",
        "dnsmos",
    } <= names


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(EvalError, match="sisdr"):
        create_metric("nope")


def test_register_rejects_a_second_factory_under_the_same_name(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    class One(Metric):
        name = "one"

    register_metric("one", One)
    with pytest.raises(EvalError, match="already registered"):
        register_metric("one", lambda: One())
    register_metric("one", lambda: One(), replace=True)


def test_load_plugin_registers_a_user_metric(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    (tmp_path / "my_utmos.py").write_text(
        textwrap.dedent(
            """
            from focalcodec.eval import Metric

            class FakeUTMOS(Metric):
                name = "utmos"
                columns = ("utmos",)
                higher_is_better = {"utmos": True}
                intrusive = False

                def score(self, items):
                    return [{"utmos": 4.0} for _ in items]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugin("my_utmos:FakeUTMOS") == "utmos"
    assert create_metric("utmos").score([None, None]) == [{"utmos": 4.0}] * 2
    with pytest.raises(EvalError, match="cannot import"):
        load_plugin("no_such_module_here:X")
    with pytest.raises(EvalError, match="no callable"):
        load_plugin("my_utmos:Missing")


def test_model_cache_builds_once():
    cache, built = MetricModels(), []
    for _ in range(3):
        value = cache.get("k", lambda: built.append(1) or "model")
    assert value == "model" and built == [1] and "k" in cache


def test_finite_mean_ignores_nan_and_non_numbers():
    assert finite_mean([1.0, math.nan, 3, None, "x"]) == 2.0
    assert math.isnan(finite_mean([math.nan]))


@pytest.mark.parametrize(
    ("metric", "module", "extra"),
    [("stoi", "pystoi", "eval"), ("pesq", "pesq", "eval")],
)
def test_missing_package_makes_a_metric_unavailable(monkeypatch, metric, module, extra):
    # A None entry in sys.modules makes `import module` raise ImportError.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(base.MetricUnavailable, match=rf"focalcodec\[{extra}\]"):
        create_metric(metric).setup(MetricModels())


def test_missing_model_packages_make_model_metrics_unavailable(monkeypatch):
    for module in ("resemblyzer", "speechmos", "speechmos.dnsmos", "faster_whisper"):
        monkeypatch.setitem(sys.modules, module, None)
    for name in ("speaker", "dnsmos"):
        with pytest.raises(base.MetricUnavailable, match="eval-models"):
            create_metric(name).setup(MetricModels())
    from focalcodec.eval.asr import FasterWhisperTranscriber

    with pytest.raises(base.MetricUnavailable, match="eval-models"):
        FasterWhisperTranscriber("small")
