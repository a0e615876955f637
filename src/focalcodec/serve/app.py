"""The server: :func:`create_app` builds the Starlette application of a :class:`ServeConfig`.

::

    GET  /                  the web page (static files of this package)
    GET  /v1/models         the served models          POST /v1/encode?model=NAME
    GET  /healthz           liveness                    POST /v1/decode
    GET  /metrics           Prometheus text             POST /v1/resynth?model=NAME
    GET  /openapi.json      the HTTP API's schema       WS   /v1/stream, /v1/rooms/{name}

Models are loaded once, here, through :func:`focalcodec.pipeline.models.load_codec` (the
one loader); every causal one gets a :class:`~focalcodec.serve.scheduler.Scheduler`.
Run it with uvicorn (``focalcodec serve`` does)::

    import uvicorn
    from focalcodec.serve.app import create_app
    from focalcodec.serve.config import ServeConfig

    app = create_app(ServeConfig(models=["focalcodec_50hz_2k_causal"]))
    uvicorn.run(app, host="127.0.0.1", port=8000, ws_max_size=256 * 1024)
"""

from __future__ import annotations

import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles

from ..errors import ModelMismatchError, UsageError
from ..pipeline.banks import load_bank
from ..pipeline.models import load_codec
from . import http, live
from .config import ServeConfig, public_name
from .metrics import Metrics
from .rooms import Rooms
from .scheduler import Scheduler

__all__ = ["STATIC", "Server", "create_app", "uvicorn_config"]

STATIC = Path(__file__).resolve().parent / "static"


class Server:
    """What every request handler shares: models, voices, schedulers, rooms, metrics.

    Parameters
    ----------
    config
        The checked configuration.
    codecs
        Public name -> codec, loaded already (None: load ``config.models``).
    """

    def __init__(self, config: ServeConfig, codecs: dict[str, Any] | None = None):
        config.check()
        self.config = config
        self.metrics = Metrics()
        self.codecs = codecs if codecs is not None else load_models(config)
        self.voices = load_voices(config, self.codecs)
        self.rooms = Rooms()
        self.schedulers: dict[str, Scheduler] = {
            name: Scheduler(
                name,
                codec,
                max_streams=config.max_sessions,
                max_batch=config.max_batch,
                metrics=self.metrics,
            )
            for name, codec in self.codecs.items()
            if codec.causal
        }
        # File jobs (HTTP) run here, beside the schedulers' threads.
        self.files = ThreadPoolExecutor(1, thread_name_prefix="fc-files")
        self.sessions = 0
        self._keys = itertools.count(1)

    def admit(self) -> int | None:
        """A new session's key, or None when ``max_sessions`` are live already."""
        if self.sessions >= self.config.max_sessions:
            return None
        self.sessions += 1
        return next(self._keys)

    def release(self) -> None:
        """A session admitted by :meth:`admit` has ended."""
        self.sessions -= 1

    def model(self, name: str | None) -> tuple[str, Any]:
        """(name, codec) of a served model: ``name``, or the first one for None."""
        if name is None:
            name = next(iter(self.codecs))
        if name not in self.codecs:
            served = ", ".join(self.codecs)
            raise KeyError(f"model {name!r} is not served here; served: {served}")
        return name, self.codecs[name]

    async def start(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.start()

    async def stop(self) -> None:
        for scheduler in self.schedulers.values():
            await scheduler.stop()
        self.files.shutdown(wait=True, cancel_futures=True)


def load_models(config: ServeConfig) -> dict[str, Any]:
    """Public name -> codec of every model of ``config``, through ``load_codec``."""
    return {
        public_name(source): load_codec(
            source,
            config.device,
            fast=config.fast,
            weights=not config.random_weights,
        )
        for source in config.models
    }


def load_voices(config: ServeConfig, codecs: dict[str, Any]) -> dict[str, dict]:
    """Model name -> voice name -> matching set, from ``config.banks``.

    A bank serves the models that made it (checked by its model hash); a bank that
    fits none of the served models stops the server.
    """
    voices: dict[str, dict] = {name: {} for name in codecs}
    for voice, path in config.banks.items():
        fits = []
        for name, codec in codecs.items():
            if not getattr(codec, "supports_knn", False):
                continue
            with contextlib.suppress(ModelMismatchError):
                voices[name][voice] = load_bank(path, codec)
                fits.append(name)
        if not fits:
            raise UsageError(
                f"--bank {voice}={path}: made by none of the served models "
                f"({', '.join(codecs)}); build it with 'focalcodec vc --save-bank'"
            )
    return voices


def create_app(config: ServeConfig, codecs: dict[str, Any] | None = None) -> Starlette:
    """The ASGI application of ``config`` (models are loaded now, unless given).

    Parameters
    ----------
    config
        What to serve and how (see :class:`ServeConfig`).
    codecs
        Public name -> codec already loaded (tests); None loads ``config.models``.
    """
    server = Server(config, codecs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    routes = [
        *http.routes(),
        WebSocketRoute("/v1/stream", live.stream_endpoint),
        WebSocketRoute("/v1/rooms/{name}", live.room_endpoint),
        Mount("/", StaticFiles(directory=STATIC, html=True), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(http.SecurityHeaders)],
    )
    app.state.server = server
    return app


def uvicorn_config(app: Starlette, config: ServeConfig, **options: Any):
    """The :class:`uvicorn.Config` that serves ``app`` as ``config`` says.

    ``options`` go to uvicorn as they are (``ssl_certfile``, ``ssl_keyfile``,
    ``log_level``...). WebSocket messages over ``config.max_message_kb`` are refused
    by uvicorn itself (close code 1009) before the server reads them.
    """
    import uvicorn

    options.setdefault("log_level", "warning")
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ws_max_size=config.max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        **options,
    )
