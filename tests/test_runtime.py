"""Device facts of :mod:`focalcodec.runtime`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from focalcodec import runtime
from focalcodec.errors import InputError


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


# -- inference precision: one check, one refusal, one autocast -----------------------


def test_check_precision_gives_the_autocast_type(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert runtime.check_precision("fp32", cpu) is None
    assert runtime.check_precision("bf16", cpu) is torch.bfloat16
    assert runtime.check_precision("fp16", gpu) is torch.float16


@pytest.mark.parametrize(
    "precision, device, match",
    [
        ("fp8", "cpu", "precision 'fp8': use one of fp32, bf16, fp16"),
        ("fp16", "cpu", "fp16 needs a GPU .*; use fp32$"),
        ("bf16", "cpu", "needs native bf16 .* cpu would emulate it.*: use fp32$"),
        ("bf16", "cuda", "needs native bf16 .* cuda would emulate it.*: use fp32$"),
    ],
)
def test_check_precision_refuses_once_in_one_wording(
    monkeypatch, precision, device, match
) -> None:
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    with pytest.raises(InputError, match=match):
        runtime.check_precision(precision, torch.device(device))
    with pytest.raises(InputError, match="use 'int8'$"):
        runtime.check_precision("bf16", torch.device("cpu"), instead="'int8'")


def test_autocast_follows_the_precision() -> None:
    with runtime.autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with runtime.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(InputError, match="precision 'half'"):
        runtime.autocast("cpu", "half")


_HEAP_CYCLES = """
import resource, sys, torch
from focalcodec.runtime import keep_freed_memory, release_free_memory
assert keep_freed_memory()
def cycle():  # three 30 MB tensors at once: 90 MB
    a, b, c = (torch.ones(30 * 2**18) for _ in range(3))
    del a, b, c
    if sys.argv[1] == "trim":
        release_free_memory()
for _ in range(3):
    cycle()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


@pytest.mark.skipif(
    runtime._libc_function("mallopt") is None, reason="needs glibc's mallopt"
)
def test_keep_freed_memory_stops_refaulting_freed_pages(tmp_path) -> None:
    # In a child process: the setting is process-wide.
    import subprocess

    script = tmp_path / "cycles.py"
    script.write_text(_HEAP_CYCLES)

    def faults(mode: str) -> int:
        run = [sys.executable, str(script), mode]
        done = subprocess.run(run, capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    # 90 MB are 23040 pages of 4 kB. Handed back (as release_free_memory does), the
    # freed memory is faulted in again in each of the 5 cycles; kept, the cycles reuse
    # it (glibc may still place one tensor anew, once).
    assert faults("trim") > 5 * 23040 // 2
    assert faults("keep") < 23040
