"""The calibration behind the ``auto`` kernel backend, and the machine it is valid for.

:func:`measure` times backends on products shaped like the codec's (about a second, once
per machine); the record is kept in ``$XDG_CACHE_HOME/focalcodec/kernels.json`` (default
``~/.cache``) under :func:`machine_key`: the CPU model, its vector flags, the torch
version and the thread count, so that a record from one machine is never used on
another. The products themselves run in :mod:`focalcodec.modules.kernels`, which passes
its product function in.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "CPU_FLAGS",
    "ENV",
    "cache_path",
    "cpu_info",
    "fastest",
    "load",
    "machine_key",
    "measure",
    "requested",
    "save",
    "trustworthy",
]

ENV = "FOCALCODEC_KERNELS"
# A product on one backend: (name, x, weight, bias, owner) -> x @ weight.T + bias.
Product = Callable[[str, Tensor, Tensor, "Tensor | None", "Tensor | None"], Tensor]

# Vector extensions that decide which kernels are fast, as /proc/cpuinfo names them.
CPU_FLAGS = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_tile",),
}
# Calibration products (rows, K, N): offline (10 s of 50 Hz frames) and streaming steps
# (4 frames, over weights that together exceed the last-level cache, as in a step).
MANY_ROWS = ((512, 1024, 4096), (512, 4096, 1024))
FEW_ROWS_SHAPES = ((4, 1024, 4096), (4, 4096, 1024))
FEW_COPIES = 3
CACHE_VERSION = 1


def requested() -> str | None:
    """The value of ``FOCALCODEC_KERNELS``, or None when unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return value or None


@functools.cache
def cpu_info() -> dict:
    """CPU model, torch's vector capability, and the flags of :data:`CPU_FLAGS`."""
    model, flags = platform.processor() or platform.machine(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            model = value.strip()
        elif name.strip() in ("flags", "Features") and flags is None:
            flags = set(value.split())
    capability = torch.backends.cpu.get_cpu_capability()
    info: dict = {"model": model, "capability": capability}
    for key, names in CPU_FLAGS.items():
        if flags is not None:
            info[key] = any(n in flags for n in names)
        else:  # no /proc/cpuinfo: what torch's kernels were chosen for
            info[key] = {"avx2": capability in ("AVX2", "AVX512")}.get(
                key, key == "avx512" and capability == "AVX512"
            )
    return info


def machine_key() -> str:
    """What a calibration is valid for: CPU, its flags, torch, threads."""
    info = cpu_info()
    flags = ",".join(k for k in CPU_FLAGS if info[k]) or "none"
    threads = torch.get_num_threads()
    return f"{info['model']} | {flags} | torch {torch.__version__} | {threads} threads"


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/focalcodec/kernels.json`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "focalcodec" / "kernels.json"


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("machines")
    return entries if isinstance(entries, dict) else {}


def load() -> dict | None:
    """The kept calibration of this machine (:func:`machine_key`), or None."""
    record = _read_cache().get(machine_key())
    if not isinstance(record, dict) or not isinstance(record.get("rates"), dict):
        return None
    return record


def save(record: dict) -> bool:
    """Keep ``record`` for this machine; False if the cache file cannot be written."""
    entries = _read_cache()
    entries[machine_key()] = record
    path = cache_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "machines": entries}))
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def measure(names: list[str], product: Product) -> dict:
    """Rates of backends ``names`` on the calibration products, and the winner.

    Returns ``{"date", "machine", "load_average", "rates": {name:
    {"many_rows_gflops", "few_rows_gflops", "few_rows_gbps", "score"}}, "backend"}``;
    ``score`` is the geometric mean of the speed-ups over ``plain`` in the two regimes.
    Backends take turns within each pass, so that drift hits them alike. Takes about a
    second and ~100 MB for a moment (the few-row weights and their packed copies).
    """
    gen = torch.Generator().manual_seed(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with torch.inference_mode():
        many = [_operands(shape, 1, gen) for shape in MANY_ROWS]
        many_s = _best_times(product, names, many)
        del many
        few_s = dict.fromkeys(names, 0.0)
        for shape in FEW_ROWS_SHAPES:
            few = [_operands(shape, FEW_COPIES, gen)]
            for name, seconds in _best_times(product, names, few).items():
                few_s[name] += seconds
            del few
    flops_many = sum(2 * m * k * n for m, k, n in MANY_ROWS)
    flops_few = sum(2 * m * k * n * FEW_COPIES for m, k, n in FEW_ROWS_SHAPES)
    bytes_few = sum(4 * k * n * FEW_COPIES for _, k, n in FEW_ROWS_SHAPES)
    rates = {}
    for name in names:
        rates[name] = {
            "many_rows_gflops": round(flops_many / many_s[name] / 1e9, 1),
            "few_rows_gflops": round(flops_few / few_s[name] / 1e9, 1),
            "few_rows_gbps": round(bytes_few / few_s[name] / 1e9, 1),
        }
        if "plain" in names:
            speedups = many_s["plain"] / many_s[name] * few_s["plain"] / few_s[name]
            rates[name]["score"] = round(math.sqrt(speedups), 3)
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_key(),
        "load_average": load,
        "rates": rates,
    }
    record["backend"] = fastest(record, names)
    return record


def _operands(shape: tuple[int, int, int], copies: int, gen: torch.Generator):
    rows, k, n = shape
    x = torch.randn(rows, k, generator=gen)
    weights = [torch.randn(n, k, generator=gen) / k**0.5 for _ in range(copies)]
    return x, weights, torch.randn(n, generator=gen)


def _best_times(product: Product, names: list[str], groups: list) -> dict[str, float]:
    """Best of three passes per backend over every (x, weights, bias) of ``groups``."""

    def run(name: str) -> float:
        start = time.perf_counter()
        for x, weights, bias in groups:
            for w in weights:
                product(name, x, w, bias, None)
        return time.perf_counter() - start

    for name in names:
        run(name)  # warm-up (and packing, for oneDNN's few-row products)
    best = dict.fromkeys(names, math.inf)
    for _ in range(3):
        for name in names:
            best[name] = min(best[name], run(name))
    return best


def trustworthy(record: dict) -> bool:
    """False for a calibration taken on a busy machine (a load average above 1.5 times
    the core count: more than the calibrating process's own threads and some), which is
    used for the process that measured it but not kept."""
    load = record.get("load_average")
    return load is None or load <= 1.5 * (os.cpu_count() or 1)


def fastest(record: dict, names: list[str]) -> str:
    """The backend of ``names`` with the best score in ``record`` (``plain`` on ties
    within 3 %: the gain must be real to be worth the machinery)."""
    scores = {n: record["rates"].get(n, {}).get("score", 0.0) for n in names}
    best = max(scores, key=scores.get)
    if "plain" in scores and scores[best] < 1.03 * scores["plain"]:
        return "plain"
    return best
