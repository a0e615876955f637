"""``focalcodec serve``: the HTTP and WebSocket server (``docs/serve.md``).

Loads the models of ``-m`` at start (clients choose among them by name, never by path)
and serves them with uvicorn until Ctrl-C. Binding anything but a loopback address
needs ``--api-key-file``. Needs the ``serve`` extra.
"""

from __future__ import annotations

import argparse

import uvicorn  # the serve extra: without it the dispatcher prints the install hint

from ..errors import UsageError
from .options import (
    add_device,
    add_kernels,
    add_threads,
    apply_threads,
    positive_float,
    positive_int,
)

__all__ = ["add_arguments", "run"]


def _bank(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``focalcodec serve`` to ``parser``."""
    parser.add_argument(
        "-m",
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="a model to serve (packaged name, Hub id or folder); repeat for more",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=positive_int, default=8000, help="default: 8000")
    add_device(parser, default="cpu")
    add_kernels(parser)
    parser.add_argument(
        "--fast",
        metavar="MODE",
        default="exact",
        help="fast mode of focalcodec.deploy.fast: exact (default), int8, bf16, fp16",
    )
    parser.add_argument(
        "--max-sessions",
        type=positive_int,
        default=64,
        metavar="N",
        help="live sessions at once; more are refused with close code 1013 (64)",
    )
    parser.add_argument(
        "--max-batch",
        type=positive_int,
        default=64,
        metavar="N",
        help="rows of one batched model step; 1 steps sessions one by one (64)",
    )
    parser.add_argument(
        "--api-key-file", metavar="FILE", help="file whose first line is the API key"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="a web origin whose pages may open WebSockets (besides the server's "
        "own); repeat for more, '*' for any",
    )
    parser.add_argument(
        "--bank",
        action="append",
        type=_bank,
        default=[],
        metavar="NAME=FILE",
        help="a voice for kNN conversion: a speaker bank (focalcodec vc --save-bank)",
    )
    parser.add_argument(
        "--max-upload-mb", type=positive_float, default=100.0, metavar="MB"
    )
    parser.add_argument(
        "--max-session-seconds", type=positive_float, default=3600.0, metavar="S"
    )
    parser.add_argument(
        "--idle-seconds",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="close a stream that sends nothing for this long (30)",
    )
    parser.add_argument("--ssl-certfile", metavar="FILE", help="TLS certificate (PEM)")
    parser.add_argument("--ssl-keyfile", metavar="FILE", help="TLS private key (PEM)")
    add_threads(parser)
    parser.add_argument("--random-weights", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", help="no access log")


def config_of(args: argparse.Namespace):
    """The :class:`~focalcodec.serve.config.ServeConfig` of the parsed arguments."""
    from ..serve.config import ServeConfig, read_key

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("TLS needs both --ssl-certfile and --ssl-keyfile")
    config = ServeConfig(
        models=list(args.model),
        host=args.host,
        port=args.port,
        device=args.device,
        fast=args.fast,
        random_weights=args.random_weights,
        max_sessions=args.max_sessions,
        max_batch=args.max_batch,
        api_key=read_key(args.api_key_file) if args.api_key_file else None,
        allow_origins=list(args.allow_origin),
        banks=dict(args.bank),
        max_upload_mb=args.max_upload_mb,
        max_session_seconds=args.max_session_seconds,
        idle_seconds=args.idle_seconds,
    )
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    """Run ``focalcodec serve``; returns the exit status."""
    config = config_of(args)  # refuses a public host without a key before loading
    from ..serve.app import create_app, uvicorn_config

    apply_threads(args)
    app = create_app(config)
    scheme = "https" if args.ssl_certfile else "http"
    print(
        f"focalcodec serve: {', '.join(app.state.server.codecs)} on "
        f"{scheme}://{config.host}:{config.port}/ (Ctrl-C stops)",
        flush=True,
    )
    options = {"access_log": not args.quiet}
    if args.ssl_certfile:
        options |= {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile}
    uvicorn.Server(uvicorn_config(app, config, **options)).run()
    return 0
