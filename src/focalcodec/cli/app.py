"""The dispatcher: parse ``focalcodec VERB ...`` and run the verb's module.

Every verb is a module of this package with ``add_arguments(parser)`` and
``run(args) -> exit status``. Only the module of the verb being run is imported, so
``focalcodec --help`` stays fast and verbs whose extra is not installed still show up,
with an install hint when they are called.

Exit status: 0 success, 1 failure (for a batch: at least one file failed), 2 usage error,
130 interrupted. Errors are one line on stderr; ``FOCALCODEC_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .. import __version__
from ..errors import FocalCodecError, UsageError
from .report import error, message, show_warning

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "VERBS", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Verb(NamedTuple):
    """A row of the verb table."""

    module: str  # module of this package with add_arguments() and run()
    help: str
    extra: str | None  # the pip extra it needs, named in the install hint


VERBS: dict[str, Verb] = {
    "encode": Verb("encode", "compress audio files to .fcz", None),
    "decode": Verb("decode", "decompress .fcz files to audio", None),
    "resynth": Verb("resynth", "encode and decode audio (audio -> audio)", None),
    "vc": Verb("vc", "kNN voice conversion towards reference recordings", None),
    "tokenize": Verb("tokenize", "tokenize a folder or manifest (resumable)", None),
    "info": Verb("info", "show the header, duration and bitrate of .fcz files", None),
    "models": Verb("models", "list the packaged models, or one model's card", None),
    "stream": Verb("stream", "encode/decode live audio in 80 ms blocks", None),
    "export": Verb("export", "export a model to ONNX", "onnx"),
    "eval": Verb("eval", "measure codec quality on a set of files", "eval"),
    "train": Verb("train", "train or fine-tune a codec", "train"),
    "lm": Verb("lm", "train, evaluate and sample a token language model", "lm"),
    "probe": Verb("probe", "ASR and classification probes on tokens", "probe"),
    "serve": Verb("serve", "serve live streams and files over HTTP/WebSocket", "serve"),
    "client": Verb("client", "stream a file or the mic through a server", "serve"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: what is wrong and where help is."""

    def error(self, message: str):
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {message} (see '{self.prog} --help')\n",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of raising SystemExit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    except UsageError as exc:  # a verb whose optional extra is not installed
        error(str(exc))
        return EXIT_USAGE
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run_safely(args)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argument parser; only the verb that ``argv`` names is imported."""
    parser = _Parser(
        prog="focalcodec",
        description="FocalCodec: speech at 0.16-0.8 kbps as one stream of tokens.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, verb in VERBS.items():
        if argv[:1] != [name]:
            sub.add_parser(name, help=verb.help, add_help=False)
            continue
        module = _import_verb(name, verb)
        cmd = sub.add_parser(name, help=verb.help, description=verb.help)
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def _import_verb(name: str, verb: Verb):
    try:
        return importlib.import_module(f"{__package__}.{verb.module}")
    except ImportError as exc:
        if verb.extra is None:
            raise
        raise UsageError(
            f"'focalcodec {name}' is not available ({exc}); install it with: "
            f"pip install 'focalcodec[{verb.extra}]'"
        ) from None


def _run_safely(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", False)
    # huggingface_hub logs every retry of an unreachable Hub; the final error suffices.
    # It reads HF_HUB_VERBOSITY when first imported, and resets its logger level then.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    with warnings.catch_warnings(), _terminate_like_ctrl_c():
        warnings.showwarning = show_warning
        if quiet:
            warnings.simplefilter("ignore")
        try:
            from .options import apply_kernels  # imports torch: not for --help

            apply_kernels(args)
            return int(args.run(args) or EXIT_OK)
        except KeyboardInterrupt:
            error("interrupted; finished outputs are kept, no partial files remain")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader of stdout went away (e.g. `| head`). Point stdout at devnull so
            # that the interpreter's final flush does not fail a second time.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILED
        except UsageError as exc:
            error(str(exc))
            return EXIT_USAGE
        except (FocalCodecError, OSError) as exc:
            error(message(exc))
            return EXIT_FAILED
        except Exception as exc:  # a bug: still one line, unless debugging
            if os.environ.get("FOCALCODEC_DEBUG"):
                raise
            error(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set FOCALCODEC_DEBUG=1 for a traceback)"
            )
            return EXIT_FAILED


@contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """Make SIGTERM (kill, job schedulers) unwind like Ctrl-C, removing temp files."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
