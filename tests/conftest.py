"""Shared fixtures: the ``../shared`` folder (golden vectors, manifests, real speech)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from support import GOLDEN_CASES, PARITY_REPORT, _shared  # noqa: E402


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared()


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return shared_dir / "golden"


@pytest.fixture(params=GOLDEN_CASES)
def golden_case(request, golden_dir: Path) -> Path:
    return golden_dir / request.param


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
