"""What a benchmark ran on, for its JSON: one record shared by the scripts here.

The CPU model and its vector flags (AVX2 / AVX-512 / VNNI / BF16 / AMX), the kernel
backend of :mod:`focalcodec.modules.kernels` with its calibrated rates, the torch
version and thread count, and the load average when the record was taken. Scripts in
this folder import it as ``from machine import machine`` (they run as
``python benchmarks/NAME.py``, which puts this folder on the path).
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def machine() -> dict:
    """The record described above; numbers from an AVX2 and an AVX-512 machine, or
    from two kernel backends, can then never be mixed up."""
    import torch

    from focalcodec.modules import calibration, kernels

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": calibration.cpu_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "kernels": kernels.describe(),
    }
