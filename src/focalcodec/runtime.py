"""Where code runs: device choice, inference precision, the ``torchrun`` process group.

One owner for all three, used by the command line, training, tokenization, probes, the
fast modes and the token LM. Half-precision inference has one check and one refusal
(:func:`check_precision`) and one context (:func:`autocast`). ``torchrun`` sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them everything runs in one
process. NCCL is used when the processes have GPUs, gloo
otherwise (so the distributed paths also run on CPU machines and in tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import InputError

__all__ = [
    "PRECISIONS",
    "DistInfo",
    "all_reduce_mean",
    "any_rank",
    "autocast",
    "barrier",
    "check_precision",
    "cleanup",
    "keep_freed_memory",
    "native_bf16",
    "resolve_device",
    "setup",
]


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int = 0):
    """The torch device for ``spec``: ``auto`` (or None) is CUDA when present, else CPU.

    Parameters
    ----------
    spec
        ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a ``torch.device``.
    local_rank
        GPU index for a bare ``cuda`` (each ``torchrun`` process takes its own GPU).

    Returns
    -------
        A ``torch.device``; :class:`~focalcodec.errors.InputError` when ``spec`` is not a
        device name or names a device this machine does not have.
    """
    if spec is None or spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            f"device {spec!r} is not a valid device name (auto, cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {spec}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {spec}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return device


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bf16 products in hardware.

    NVIDIA GPUs from Ampere on and ROCm GPUs do; so do CPUs with AVX512-BF16 or AMX,
    where bf16 autocast runs the matrix products and convolutions about twice as fast as
    float32 (``docs/performance.md``). Elsewhere bf16 is emulated: no faster than float32,
    and usually slower (not measured here: this project's CPU has AVX512-BF16).
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        # As torch decides: every ROCm GPU; NVIDIA's from compute capability 8 (Ampere).
        return (
            bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
        )
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


# Inference precisions: the autocast type of each (None: float32 throughout).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def check_precision(
    precision: str, device: torch.device, instead: str = "fp32"
) -> torch.dtype | None:
    """The autocast type of ``precision`` on ``device``, or the one refusal.

    Refused (:class:`~focalcodec.errors.InputError`): an unknown name; fp16 on a CPU
    (no fast float16 there); bf16 where :func:`native_bf16` is false, since emulated
    bf16 gains nothing over float32.

    Parameters
    ----------
    precision
        A key of :data:`PRECISIONS`.
    device
        Where the model runs.
    instead
        What the refusal tells the user to use instead (a precision, a fast mode).

    Returns
    -------
        ``torch.bfloat16``, ``torch.float16``, or None for fp32.
    """
    dtype = _precision_dtype(precision)
    if dtype is torch.float16 and device.type == "cpu":
        raise InputError(
            f"precision fp16 needs a GPU ({device} has no fast float16); use {instead}"
        )
    if dtype is torch.bfloat16 and not native_bf16(device):
        raise InputError(
            "precision bf16 needs native bf16 (a GPU from Ampere on, or a CPU with "
            f"AVX512-BF16 or AMX); {device} would emulate it, gaining nothing over "
            f"fp32: use {instead}"
        )
    return dtype


def autocast(
    device: torch.device | str, precision: str
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``precision`` on ``device``'s type; fp32: a null context.

    It does not check the hardware: call :func:`check_precision` once first.
    """
    dtype = _precision_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _precision_dtype(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs, checkpoints and samples."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the process group started by ``torchrun`` (if any) and pick the device.

    Parameters
    ----------
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. With ``auto`` and ``cuda`` each process
        uses GPU ``LOCAL_RANK``.

    Returns
    -------
        This process's :class:`DistInfo`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op when running alone)."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over processes (identity when running alone).

    Every process must pass the same keys in the same order.
    """
    if not dist.is_initialized() or not values:
        return values
    keys = list(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    packed /= dist.get_world_size()
    return dict(zip(keys, packed.tolist(), strict=True))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on at least one of them."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``; else a no-op).

    Long inputs run one window after another, each allocating and freeing hundreds of
    MB of tensors of slightly different sizes; glibc keeps the freed, fragmented pages,
    so without this the resident memory of a 20-minute encode creeps up by a GB
    (``docs/reliability.md``). Called after every window of a long input and every file
    of a batch; it takes well under a millisecond when there is little to return.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def keep_freed_memory(keep_mb: int = 256) -> bool:
    """Let glibc keep up to ``keep_mb`` MB of freed heap for reuse (``mallopt``).

    A streaming step allocates and frees tens of MB of tensors (the key/value caches
    and contexts of its state). By default glibc hands freed memory at the top of its
    heap back to the system at once, so the next step faults the same pages in again:
    thousands of page faults per 80 ms block, which make up much of a block's time
    and most of its variance on the development VM (``docs/performance.md``). This
    sets, for the whole process, the trim threshold to ``keep_mb`` and the mmap
    threshold to glibc's largest (32 MB; setting one disables glibc's adaptive choice
    of both). Resident memory may then stay up to ``keep_mb`` above what is in use;
    :func:`release_free_memory` still hands it back when called. Returns False where
    glibc's ``mallopt`` is missing (other C libraries, other systems).
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    ok = mallopt(mmap_threshold, 32 * 2**20)
    return bool(ok and mallopt(trim_threshold, keep_mb * 2**20))


@functools.cache
def _libc_function(name: str):
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, name)  # glibc's; absent from musl and other C libraries
    except (OSError, AttributeError):
        return None


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # absent from musl and other C libraries
    except (OSError, AttributeError):
        return None
