"""The HTTP endpoints, every one through the library's file pipelines.

``POST /v1/encode`` streams the request body to a temporary file (never more than
``max_upload_mb``, never held in memory whole), runs
:func:`focalcodec.pipeline.files.encode_file` on it in a worker thread and returns the
file it wrote: the bytes ``focalcodec encode`` writes for the same input. Likewise
``/v1/decode`` (:func:`~focalcodec.pipeline.files.decode_file`) and ``/v1/resynth``
(:func:`~focalcodec.pipeline.files.resynth_file`). Errors are JSON ``{"error": ...}``
with a status that says whose fault it was.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import FocalCodecError, ModelMismatchError
from ..identity import check_model
from ..pipeline.files import decode_file, encode_file, resynth_file
from .auth import bearer_key, key_matches
from .metrics import CONTENT_TYPE_LATEST
from .openapi import OPENAPI

__all__ = ["SecurityHeaders", "problem", "routes"]

FCZ_TYPE = "application/x-focalcodec"
_AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


def problem(status: int, message: str) -> JSONResponse:
    """An error answer: ``{"error": message}`` with ``status``."""
    response = JSONResponse({"error": message}, status)
    if status == 401:
        response.headers["www-authenticate"] = "Bearer"
    return response


def _endpoint(name: str, *, auth: bool = True):
    """Wrap a handler: API key, JSON errors, the request counter."""

    def wrap(handler):
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            server = request.app.state.server
            try:
                if auth and not key_matches(
                    server.config.api_key, bearer_key(request.headers)
                ):
                    server.metrics.refused.labels("auth").inc()
                    response = problem(401, "a valid API key is required")
                else:
                    response = await handler(request, server)
            except FocalCodecError as exc:
                status = 422 if isinstance(exc, ModelMismatchError) else 400
                response = problem(status, str(exc))
            except Exception as exc:  # a bug: this request fails, the server goes on
                server.metrics.errors.labels("http").inc()
                response = problem(500, f"internal error: {type(exc).__name__}: {exc}")
            server.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return run

    return wrap


# ---------------------------------------------------------------------------------------
# Plain endpoints
# ---------------------------------------------------------------------------------------


@_endpoint("healthz", auth=False)
async def healthz(request: Request, server: Any) -> Response:
    return JSONResponse(
        {"status": "ok", "models": list(server.codecs), "sessions": server.sessions}
    )


@_endpoint("models")
async def models(request: Request, server: Any) -> Response:
    return JSONResponse({"models": [_card(server, name) for name in server.codecs]})


def _card(server: Any, name: str) -> dict[str, Any]:
    codec = server.codecs[name]
    card = {
        "name": name,
        "sample_rate_input": int(codec.sample_rate_input),
        "sample_rate_output": int(codec.sample_rate_output),
        "token_rate": float(codec.token_rate),
        "bits_per_token": int(codec.bits_per_token),
        "codebook_size": int(codec.codebook_size),
        "bitrate": float(codec.bitrate),
        "causal": bool(codec.causal),
        "voices": sorted(server.voices.get(name, {})),
    }
    if codec.causal:
        card |= {
            "chunk_size": int(codec.chunk_size),
            "chunk_tokens": int(codec.chunk_tokens),
            "latency_ms": float(codec.latency),
        }
    return card


@_endpoint("metrics")
async def metrics(request: Request, server: Any) -> Response:
    return Response(server.metrics.text(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


# ---------------------------------------------------------------------------------------
# File endpoints
# ---------------------------------------------------------------------------------------


@_endpoint("encode")
async def encode(request: Request, server: Any) -> Response:
    found = _model(server, request)
    if isinstance(found, Response):
        return found
    entropy = request.query_params.get("entropy", "none")
    if entropy not in ("none", "adaptive"):
        return problem(400, f"entropy must be none or adaptive, got {entropy!r}")
    job = functools.partial(encode_file, codec=found[1], entropy=entropy, name="upload")
    return await _file_job(request, server, job, "out.fcz", FCZ_TYPE)


@_endpoint("decode")
async def decode(request: Request, server: Any) -> Response:
    fmt = request.query_params.get("format", "wav")
    if fmt not in _AUDIO_TYPES:
        return problem(400, f"format must be one of {', '.join(_AUDIO_TYPES)}")
    loader = functools.partial(_served, server)
    job = functools.partial(decode_file, codec=loader, name="upload")
    return await _file_job(request, server, job, f"out.{fmt}", _AUDIO_TYPES[fmt])


@_endpoint("resynth")
async def resynth(request: Request, server: Any) -> Response:
    found = _model(server, request)
    if isinstance(found, Response):
        return found
    name, codec = found
    fmt = request.query_params.get("format", "wav")
    if fmt not in _AUDIO_TYPES:
        return problem(400, f"format must be one of {', '.join(_AUDIO_TYPES)}")
    voice = request.query_params.get("voice")
    voices = server.voices.get(name, {})
    if voice is not None and voice not in voices:
        known = ", ".join(voices) or "none"
        return problem(404, f"voice {voice!r} is not served for {name} ({known})")
    matching_set = None if voice is None else voices[voice]
    job = functools.partial(
        resynth_file, codec=codec, matching_set=matching_set, name="upload"
    )
    return await _file_job(request, server, job, f"out.{fmt}", _AUDIO_TYPES[fmt])


def _model(server: Any, request: Request) -> tuple[str, Any] | Response:
    """(name, codec) of the ``model`` parameter, or the 404 answer."""
    try:
        return server.model(request.query_params.get("model"))
    except KeyError as exc:
        return problem(404, exc.args[0])


def _served(server: Any, header: Any) -> Any:
    """The served codec that made a ``.fcz`` header (``decode_file``'s loader)."""
    for codec in server.codecs.values():
        try:
            check_model(header, codec, where="upload")
        except ModelMismatchError:
            continue
        return codec
    made_by = header.model_name or f"config {header.model_hash.hex()}"
    raise ModelMismatchError(
        f"upload: made by {made_by}, which this server does not serve "
        f"(served: {', '.join(server.codecs)})"
    )


async def _file_job(
    request: Request, server: Any, job: Any, out_name: str, media_type: str
) -> Response:
    """Stream the body to a temporary file, run ``job(source, dest)`` in the files
    thread, answer with the file it wrote (removed once sent)."""
    folder = Path(tempfile.mkdtemp(prefix="focalcodec-serve-"))
    try:
        source = await _receive_upload(request, folder / "upload", server)
        if isinstance(source, Response):
            shutil.rmtree(folder, ignore_errors=True)
            return source
        dest = folder / out_name
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(server.files, job, source, dest)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    headers = {
        "x-focalcodec-seconds": f"{report.seconds:.6f}",
        "x-focalcodec-tokens": str(report.num_tokens),
    }
    return FileResponse(
        dest,
        media_type=media_type,
        headers=headers,
        filename=out_name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


async def _receive_upload(request: Request, path: Path, server: Any) -> Path | Response:
    """Write the request body to ``path`` piece by piece, within the size cap;
    returns the path, or the error answer."""
    cap = server.config.max_upload_bytes
    too_big = f"the upload is over {server.config.max_upload_mb:g} MB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        server.metrics.refused.labels("upload").inc()
        return problem(413, too_big)
    size = 0
    with open(path, "wb") as fileobj:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                server.metrics.refused.labels("upload").inc()
                return problem(413, too_big)
            fileobj.write(chunk)
    if not size:
        return problem(400, "the request body is empty: send the file as the body")
    return path


# ---------------------------------------------------------------------------------------
# Routes and headers
# ---------------------------------------------------------------------------------------


def routes() -> list[Route]:
    """The HTTP routes of the server."""
    return [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi, include_in_schema=False),
        Route("/v1/models", models),
        Route("/v1/encode", encode, methods=["POST"]),
        Route("/v1/decode", decode, methods=["POST"]),
        Route("/v1/resynth", resynth, methods=["POST"]),
    ]


_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: "
    "blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """ASGI middleware: no sniffing, no referrer, and a strict policy for the page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", _PAGE_POLICY.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
