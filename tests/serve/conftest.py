"""Servers for the serve tests: the real application on uvicorn, on a free loopback
port, in a thread of the test process (so that the tests can also look at its state).

The model is the tiny causal golden case ``causal_wavenext_50hz`` (16 kHz in, 24 kHz
out, 80 ms blocks of 4 tokens).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("starlette", reason="needs the serve extra (starlette, uvicorn)")
pytest.importorskip("uvicorn", reason="needs the serve extra (starlette, uvicorn)")
pytest.importorskip("websockets", reason="needs the serve extra (websockets)")

from support import DATA, free_port  # noqa: E402

MODEL = str(DATA / "golden" / "causal_wavenext_50hz")
NAME = "causal_wavenext_50hz"


class Running:
    """A server running in a thread: its URLs and its :class:`Server` state."""

    def __init__(self, app: Any, uvicorn_server: Any, port: int) -> None:
        self.app = app
        self.state = app.state.server
        self.uvicorn = uvicorn_server
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, Any]:
        return request(self.http + path, headers=headers)

    def post(
        self, path: str, body: bytes, headers: dict | None = None
    ) -> tuple[int, bytes, Any]:
        return request(self.http + path, body, headers)

    def gauge(self, kind: str = "stream") -> float:
        return self.state.metrics.open_sessions.labels(kind)._value.get()

    def wait_idle(self, seconds: float = 10.0) -> None:
        """Wait until no session is live (closing handshakes take a moment)."""
        deadline = time.monotonic() + seconds
        while self.state.sessions and time.monotonic() < deadline:
            time.sleep(0.02)


def request(
    url: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes, Any]:
    """(status, body, headers) of a GET, or a POST when ``body`` is given."""
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


@contextmanager
def running(**overrides: Any) -> Iterator[Running]:
    """Start a server of the golden model with ``ServeConfig`` overrides."""
    import uvicorn

    from focalcodec.serve.app import create_app, uvicorn_config
    from focalcodec.serve.config import ServeConfig

    port = free_port()
    config = ServeConfig(models=[MODEL], port=port, **overrides)
    app = create_app(config)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Running(app, server, port)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    """A default server for the module (no key, 64 sessions)."""
    with running() as srv:
        yield srv


@pytest.fixture(scope="session")
def start_server():
    """``start_server(**overrides)``: a context manager running a server of its own."""
    return running


@pytest.fixture(scope="session")
def model_dir() -> str:
    """The served model's folder (its public name is ``causal_wavenext_50hz``)."""
    return MODEL
