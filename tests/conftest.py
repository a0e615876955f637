"""Shared fixtures: the in-repo test data (golden vectors, manifests, real speech) and
the optional larger ``../shared`` folder. Helpers live in ``support.py``."""

from __future__ import annotations

import json
import os
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

from support import DATA, GOLDEN_CASES, PARITY_REPORT, Golden, load_golden, shared_path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data``: the golden cases, manifests, configs and a few speech clips."""
    return DATA


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The 81-minute speech set of ``../shared``; tests that need it skip without it."""
    path = shared_path()
    if path is None:
        pytest.skip(
            "needs ../shared/audio (set FOCALCODEC_SHARED); not in a bare clone"
        )
    return path


@pytest.fixture(scope="session")
def golden_dir(data_dir: Path) -> Path:
    return data_dir / "golden"


@pytest.fixture(params=GOLDEN_CASES)
def golden_case(request, golden_dir: Path) -> Path:
    """The folder of each golden case in turn."""
    return golden_dir / request.param


@pytest.fixture(params=GOLDEN_CASES)
def golden(request) -> Golden:
    """Each golden case in turn, loaded once per session (model, tensors, metadata).

    Narrow it with ``@pytest.mark.parametrize("golden", CAUSAL, indirect=True)``.
    """
    return load_golden(request.param)


@pytest.fixture(autouse=True)
def _deterministic():
    # Golden vectors were made single-threaded; one thread also keeps CI timing stable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not PARITY_REPORT:
        return
    terminalreporter.section("golden parity: worst max-abs error per case")
    for case, errors in sorted(PARITY_REPORT.items()):
        name, worst = max(errors.items(), key=lambda kv: kv[1])
        terminalreporter.write_line(f"{case:34s} {worst:.2e}  ({name})")
    # FOCALCODEC_PARITY_JSON=path keeps every error (docs/parity.md quotes that file).
    if path := os.environ.get("FOCALCODEC_PARITY_JSON"):
        record = {
            "command": f"FOCALCODEC_PARITY_JSON={path} python -m pytest "
            "tests/test_golden.py -p no:cacheprovider",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": 1,
            "max_abs_error": PARITY_REPORT,
        }
        Path(path).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
