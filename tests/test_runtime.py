"""Device facts of :mod:`focalcodec.runtime`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from focalcodec import runtime


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/proc/cpuinfo").exists(),
    reason="the CPU flags are read from /proc/cpuinfo (Linux)",
)
def test_native_bf16_matches_the_cpu_flags() -> None:
    flags = _cpuinfo_flags()
    if not flags:
        pytest.skip("/proc/cpuinfo lists no flags on this CPU architecture")
    expected = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert runtime.native_bf16(torch.device("cpu")) is expected


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected",
    [
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ],
)
def test_native_bf16_on_cpu_needs_one_bf16_unit(
    monkeypatch, avx512_bf16, amx, expected
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert runtime.native_bf16(torch.device("cpu")) is expected


def test_native_bf16_is_false_where_unknown() -> None:
    assert runtime.native_bf16(torch.device("meta")) is False
    if not torch.cuda.is_available():
        assert runtime.native_bf16(torch.device("cuda")) is False


@pytest.mark.parametrize("capability, expected", [((7, 5), False), ((8, 0), True)])
def test_native_bf16_on_nvidia_gpus_from_ampere_on(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert runtime.native_bf16(torch.device("cuda", 0)) is expected
