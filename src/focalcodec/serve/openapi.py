"""The OpenAPI 3.1 description of the HTTP API (``GET /openapi.json``).

Written out here rather than generated from docstrings, so that the server needs no
YAML parser; ``tests/serve/test_http.py`` checks that it names every HTTP route.
"""

from __future__ import annotations

from .. import __version__

__all__ = ["OPENAPI"]

_ERROR = {
    "description": "what was wrong",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_MODEL = {
    "name": "model",
    "in": "query",
    "required": False,
    "description": "a served model (GET /v1/models); default: the first one",
    "schema": {"type": "string"},
}
_FORMAT = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["wav", "flac"], "default": "wav"},
}
_UPLOAD = {
    "required": True,
    "description": "the whole file as the body (size-capped, streamed to disk)",
    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
}
_AUDIO_OUT = {
    "description": "the audio file",
    "content": {"audio/wav": {}, "audio/flac": {}},
}
_FILE_ERRORS = {"400": _ERROR, "401": _ERROR, "404": _ERROR, "413": _ERROR}
_BEARER = [{"bearer": []}]


def _post(summary: str, params: list, ok: dict) -> dict:
    return {
        "post": {
            "summary": summary,
            "parameters": params,
            "requestBody": _UPLOAD,
            "responses": {"200": ok, **_FILE_ERRORS},
            "security": _BEARER,
        }
    }


OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "focalcodec serve",
        "version": __version__,
        "description": "Speech at 0.16-0.8 kbps. Live streams: WebSocket /v1/stream "
        "and /v1/rooms/{name}, protocol in docs/serve.md.",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/healthz": {
            "get": {"summary": "liveness", "responses": {"200": {"description": "ok"}}}
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {"200": {"description": "the metrics"}},
                "security": _BEARER,
            }
        },
        "/v1/models": {
            "get": {
                "summary": "the served models: rates, bitrate, causal, chunk size, voices",
                "responses": {"200": {"description": "{models: [...]}"}, "401": _ERROR},
                "security": _BEARER,
            }
        },
        "/v1/encode": _post(
            "audio file -> .fcz bytes (those of `focalcodec encode`)",
            [
                _MODEL,
                {
                    "name": "entropy",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["none", "adaptive"]},
                },
            ],
            {
                "description": "the .fcz file",
                "content": {"application/x-focalcodec": {}},
            },
        ),
        "/v1/decode": _post(".fcz file -> audio", [_FORMAT], _AUDIO_OUT),
        "/v1/resynth": _post(
            "audio file -> tokens -> audio (optionally in another voice)",
            [
                _MODEL,
                _FORMAT,
                {
                    "name": "voice",
                    "in": "query",
                    "required": False,
                    "description": "a voice of the model (GET /v1/models)",
                    "schema": {"type": "string"},
                },
            ],
            _AUDIO_OUT,
        ),
    },
}
