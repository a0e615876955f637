"""The ``focalcodec`` command line (also ``python -m focalcodec``).

Subcommands implemented here: encode, decode, resynth, vc, tokenize, info and models.
Others (eval, train, export, stream) live in optional modules that are imported only when
their subcommand runs, so ``focalcodec --help`` stays fast and works without the extras.

Conventions: a directory input is searched recursively and its tree is mirrored under the
output directory; ``-`` means stdin or stdout; outputs appear atomically and are never
overwritten without ``--force``; a batch reports each bad file on one line, goes on, and
exits with status 1 at the end. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_write
from .errors import FocalCodecError

__all__ = ["main"]

DEFAULT_MODEL = "focalcodec_50hz"
FCZ_SUFFIX = ".fcz"
# Subcommands provided by other modules: name -> (module, one-line help, extra to install).
EXTERNAL = {
    "eval": ("focalcodec.eval.cli", "measure codec quality on a set of files", "eval"),
    "train": ("focalcodec.train.cli", "train or fine-tune a codec", "train"),
    "export": ("focalcodec.export_cli", "export a model to ONNX", "onnx"),
    "stream": ("focalcodec.stream_cli", "encode/decode live audio in chunks", "stream"),
}
# Built-in subcommands: name -> (one-line help, whether the common options apply). The
# parser comes from cli_commands.add_<name> and the action from cli_commands.run_<name>.
BUILTIN = {
    "encode": ("compress audio files to .fcz", True),
    "decode": ("decompress .fcz files to audio", True),
    "resynth": ("encode and decode audio (audio -> audio)", True),
    "vc": ("kNN voice conversion towards reference recordings", True),
    "tokenize": ("tokenize a directory or manifest into shards (resumable)", True),
    "info": ("show the header, duration and bitrate of .fcz files", False),
    "models": ("list the packaged models", False),
}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(FocalCodecError):
    """Arguments that cannot work together; reported with exit status 2."""


@dataclass
class Item:
    """One unit of batch work: ``src`` None means stdin, ``dst`` None means stdout."""

    src: Path | None
    dst: Path | None
    error: str | None = None
    record: dict | None = None

    @property
    def name(self) -> str:
        return "<stdin>" if self.src is None else str(self.src)


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of raising SystemExit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    except _MissingExtra as exc:
        _error(str(exc))
        return EXIT_USAGE
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run_safely(args)


def _run_safely(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", False)
    # huggingface_hub logs every retry of an unreachable Hub; the final error suffices.
    # It reads HF_HUB_VERBOSITY when first imported, and resets its logger level then.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    with warnings.catch_warnings(), _terminate_like_ctrl_c():
        warnings.showwarning = _show_warning
        if quiet:
            warnings.simplefilter("ignore")
        try:
            return int(args.run(args) or EXIT_OK)
        except KeyboardInterrupt:
            _error("interrupted; finished outputs are kept, no partial files remain")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader of stdout went away (e.g. `| head`). Point stdout at devnull so
            # that the interpreter's final flush does not fail a second time.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILED
        except UsageError as exc:
            _error(str(exc))
            return EXIT_USAGE
        except (FocalCodecError, OSError) as exc:
            _error(_message(exc))
            return EXIT_FAILED
        except Exception as exc:  # a bug: still one line, unless debugging
            if os.environ.get("FOCALCODEC_DEBUG"):
                raise
            _error(
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


class _MissingExtra(Exception):
    pass


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argument parser; external subcommands are imported only if ``argv`` names one."""
    parser = argparse.ArgumentParser(
        prog="focalcodec",
        description="FocalCodec: speech at 0.16-0.65 kbps as single-stream tokens.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    from . import cli_commands

    common = [_common_options()]
    for name, (help_text, has_common) in BUILTIN.items():
        cmd = sub.add_parser(
            name, help=help_text, description=help_text, parents=common * has_common
        )
        getattr(cli_commands, f"add_{name}")(cmd)
        cmd.set_defaults(run=getattr(cli_commands, f"run_{name}"))
    for name, (module_name, help_text, extra) in EXTERNAL.items():
        if argv[:1] == [name]:
            module = _import_external(name, module_name, extra)
            cmd = sub.add_parser(name, help=help_text, description=help_text)
            module.add_arguments(cmd)
            cmd.set_defaults(run=module.run)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _import_external(name: str, module_name: str, extra: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise _MissingExtra(
            f"'focalcodec {name}' is not available ({exc}); install it with: "
            f"pip install 'focalcodec[{extra}]'"
        ) from None


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)"
    )
    group.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        help="files per step; equal-length clips share one forward pass (default: 1)",
    )
    group.add_argument(
        "--force", action="store_true", help="overwrite existing output files"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or warnings"
    )
    return common


def _model_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    where = f"default: {default}" if default else "default: the model named in the file"
    parser.add_argument(
        "-m",
        "--model",
        default=default,
        help=f"packaged name, Hugging Face repo id or local directory ({where})",
    )


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FocalCodecError):
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _error(text: str) -> None:
    _write_line(f"focalcodec: error: {text}")


def _write_line(text: str) -> None:
    from tqdm import tqdm

    # tqdm.write keeps an active progress bar intact below the message.
    tqdm.write(text, file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _write_line(f"focalcodec: warning: {message}")


# ---------------------------------------------------------------------------------------
# Planning batch work
# ---------------------------------------------------------------------------------------


def find_files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files under ``root`` (recursive) whose suffix is in ``suffixes``, sorted."""
    wanted = {s.lower() for s in suffixes}
    found = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith(".")
    ]
    return sorted(found)


def plan(
    inputs: list[str],
    output: str | None,
    suffixes: Iterable[str],
    out_suffix: str,
    *,
    force: bool,
) -> list[Item]:
    """Pair every input file with its output path.

    A single input file goes to ``output`` itself unless ``output`` is an existing
    directory or ends with a path separator. Otherwise ``output`` is a directory: a file
    input lands there under its own name, and a directory input's tree is mirrored there.
    Inputs that cannot be processed come back as items with an ``error``.
    """
    if output is None:
        raise UsageError("an output is required: -o FILE or -o DIR")
    single = len(inputs) == 1 and (inputs[0] == "-" or not Path(inputs[0]).is_dir())
    to_dir = not (output == "-" or (single and not _names_dir(output)))
    if output == "-" and not single:
        raise UsageError("-o - (stdout) takes exactly one input file")
    items: list[Item] = []
    for text in inputs:
        if text == "-":
            name = Path("stdin").with_suffix(out_suffix)
            items.append(Item(None, Path(output) / name if to_dir else _out(output)))
            continue
        src = Path(text)
        if src.is_dir():
            files = find_files(src, suffixes)
            if not files:
                items.append(Item(src, None, f"no {'/'.join(suffixes)} files found"))
            for path in files:
                rel = path.relative_to(src).with_suffix(out_suffix)
                items.append(Item(path, Path(output) / rel))
        else:
            dst = Path(output) / src.with_suffix(out_suffix).name if to_dir else None
            items.append(Item(src, dst if to_dir else _out(output)))
    _mark_conflicts(items, force)
    return items


def _names_dir(output: str) -> bool:
    return Path(output).is_dir() or output.endswith(("/", os.sep))


def _out(output: str) -> Path | None:
    return None if output == "-" else Path(output)


def _mark_conflicts(items: list[Item], force: bool) -> None:
    seen: dict[Path, str] = {}
    for item in items:
        if item.error or item.dst is None:
            continue
        key = item.dst.resolve()
        if key in seen:
            item.error = f"output {item.dst} is also the output of {seen[key]}"
        elif item.dst.exists() and not force:
            item.error = f"output {item.dst} exists; pass --force to overwrite it"
        elif item.src is not None and item.dst.exists() and item.dst.samefile(item.src):
            item.error = f"output {item.dst} is the input itself"
        seen[key] = item.name


Outcome = list  # one entry per item of a chunk: None (done) or the exception raised


def per_item(work: Callable[[Item], None]) -> Callable[[list[Item]], Outcome]:
    """Turn a one-item function into a chunk function for :func:`run_batch`."""

    def run(chunk: list[Item]) -> Outcome:
        outcome: Outcome = []
        for item in chunk:
            try:
                work(item)
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)
        return outcome

    return run


def run_batch(
    items: list[Item],
    work: Callable[[list[Item]], Outcome],
    *,
    quiet: bool,
    batch_size: int = 1,
    unit: str = "file",
) -> int:
    """Run ``work`` on chunks of items, report each failure on one line, return a status.

    ``work`` returns, per item of its chunk, None or the exception that item raised.
    """
    from tqdm import tqdm

    failed = 0
    for item in items:
        if item.error:
            _error(f"{item.name}: {item.error}")
            failed += 1
    todo = [i for i in items if not i.error]
    bar = tqdm(
        total=len(todo), unit=unit, disable=quiet or len(todo) < 2, file=sys.stderr
    )
    with bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for item, exc in zip(chunk, work(chunk), strict=True):
                if exc is not None:
                    failed += 1
                    _report(item, exc)
            bar.update(len(chunk))
    if failed and len(items) > 1:
        _error(f"{failed} of {len(items)} {unit}s failed")
    return EXIT_FAILED if failed else EXIT_OK


def _report(item: Item, exc: BaseException) -> None:
    if os.environ.get("FOCALCODEC_DEBUG"):
        raise exc
    known = isinstance(exc, (FocalCodecError, OSError))
    kind = "" if known else f"{type(exc).__name__}: "
    text = _message(exc)
    prefix = "" if text.startswith(item.name) else f"{item.name}: "
    _error(f"{prefix}{kind}{text}")


# ---------------------------------------------------------------------------------------
# Shared helpers for commands
# ---------------------------------------------------------------------------------------


def resolve_device(text: str):
    """``auto`` -> cuda when available, else cpu; anything else is checked."""
    import torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a valid device (cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available on this machine")
    return device


class ModelCache:
    """Load each model once per run, on the requested device, in eval mode."""

    def __init__(self, device_text: str) -> None:
        # Resolved now, so that a bad --device stops the run before any work starts.
        self.device = resolve_device(device_text)
        self._models: dict[str, Any] = {}

    def get(self, spec: str):
        if spec not in self._models:
            from . import FocalCodec

            try:
                codec = FocalCodec.from_pretrained(spec)
            except FocalCodecError as exc:
                raise FocalCodecError(f"cannot load model {spec!r}: {exc}") from None
            self._models[spec] = codec.eval().to(self.device)
        return self._models[spec]


def read_input(item: Item) -> Any:
    """A path, or a seekable in-memory copy of stdin."""
    return io.BytesIO(sys.stdin.buffer.read()) if item.src is None else item.src


def write_output(item: Item, data: bytes, *, force: bool) -> None:
    """Write bytes to stdout, or atomically to ``item.dst``."""
    if item.dst is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    inputs = () if item.src is None else (item.src,)
    with atomic_write(item.dst, force=force, inputs=inputs) as fileobj:
        fileobj.write(data)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))
