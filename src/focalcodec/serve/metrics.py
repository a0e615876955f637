"""The server's Prometheus metrics (``GET /metrics``), through ``prometheus_client``.

Each server has its own registry, so that several servers in one process (tests) keep
their counts apart. The names:

=====================================  =========  =========================================
``focalcodec_serve_open_sessions``     gauge      live WebSocket sessions, by ``kind``
                                                  (stream, room, listener)
``focalcodec_serve_batch_rows``        histogram  rows of one batched model step, by
                                                  ``model`` and ``step`` (encode, decode)
``focalcodec_serve_step_seconds``      histogram  wall time of one scheduler tick's model
                                                  calls, by ``model``
``focalcodec_serve_refused_total``     counter    sessions and requests refused, by
                                                  ``reason`` (capacity, auth, origin)
``focalcodec_serve_errors_total``      counter    sessions closed on an error, by ``kind``
                                                  (protocol, internal, http)
``focalcodec_serve_skipped_total``     counter    packets a room's slow listener skipped
``focalcodec_serve_requests_total``    counter    HTTP requests, by ``endpoint``, ``status``
=====================================  =========  =========================================
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_SECONDS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.2, 0.4, 1.0, 2.0)


class Metrics:
    """The metrics of one server, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.open_sessions = Gauge(
            "focalcodec_serve_open_sessions",
            "Live WebSocket sessions",
            ["kind"],
            registry=r,
        )
        for kind in ("stream", "room", "listener"):
            self.open_sessions.labels(kind).set(0)
        self.batch_rows = Histogram(
            "focalcodec_serve_batch_rows",
            "Rows of one batched model step",
            ["model", "step"],
            buckets=_ROWS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "focalcodec_serve_step_seconds",
            "Wall time of the model calls of one scheduler tick",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.refused = Counter(
            "focalcodec_serve_refused",
            "Sessions and requests refused",
            ["reason"],
            registry=r,
        )
        self.errors = Counter(
            "focalcodec_serve_errors",
            "Sessions or requests ended by an error",
            ["kind"],
            registry=r,
        )
        self.skipped = Counter(
            "focalcodec_serve_skipped",
            "Packets skipped by slow room listeners",
            registry=r,
        )
        self.requests = Counter(
            "focalcodec_serve_requests",
            "HTTP requests",
            ["endpoint", "status"],
            registry=r,
        )

    def step(self, model: str, seconds: float, encode_rows: int, decode_rows: int):
        """Record one scheduler tick that ran the model."""
        self.step_seconds.labels(model).observe(seconds)
        if encode_rows:
            self.batch_rows.labels(model, "encode").observe(encode_rows)
        if decode_rows:
            self.batch_rows.labels(model, "decode").observe(decode_rows)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
