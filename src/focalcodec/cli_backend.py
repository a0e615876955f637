"""Backend choice and model cards for the command line.

``--backend torch`` (the default) runs :class:`~focalcodec.FocalCodec`; ``--backend
onnx`` runs the graphs of ``focalcodec export`` with ONNX Runtime through
:class:`~focalcodec.onnx_backend.OnnxCodec`, which offers the calls and properties that
``encode``, ``decode``, ``resynth``, ``tokenize`` and ``stream`` use. ``models --details
NAME`` prints a model card (:mod:`focalcodec.modelcard`).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from .cli import ModelCache, UsageError, print_json
from .errors import FocalCodecError

__all__ = [
    "BACKENDS",
    "Models",
    "OnnxModels",
    "add_backend_option",
    "add_details_option",
    "open_models",
    "refuse_onnx",
    "run_details",
]

BACKENDS = ("torch", "onnx")
MANIFEST = "manifest.json"
EXPORT_HINT = "a folder written by 'focalcodec export --format onnx -o DIR'"


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend {torch,onnx}`` to a subcommand."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: the PyTorch model (default); onnx: run an ONNX export with ONNX "
        "Runtime on the CPU (--model is then the export folder)",
    )


def open_models(args: argparse.Namespace) -> Models:
    """The model loader for ``args.backend``; bad combinations stop the run here."""
    if getattr(args, "backend", "torch") == "onnx":
        return OnnxModels(args.model, args.device)
    return ModelCache(args.device)


def refuse_onnx(args: argparse.Namespace, command: str, reason: str) -> None:
    """Stop a subcommand that the ONNX backend cannot run."""
    if getattr(args, "backend", "torch") == "onnx":
        raise UsageError(
            f"'focalcodec {command}' cannot use --backend onnx: {reason}; use "
            "--backend torch"
        )


class OnnxModels:
    """Drop-in for :class:`~focalcodec.cli.ModelCache` that opens ONNX exports.

    Parameters
    ----------
    spec
        The ``--model`` value: an export folder (holding ``manifest.json``).
    device_text
        The ``--device`` value. The graphs run on ONNX Runtime's CPU provider, so only
        ``auto`` and ``cpu`` are accepted.
    threads
        Intra-op threads of each ONNX Runtime session; None lets it decide.
    """

    def __init__(
        self, spec: str | None, device_text: str, threads: int | None = None
    ) -> None:
        # Checked now, so that a wrong folder or device stops the run before any work.
        if device_text != "auto" and device_text.split(":")[0] != "cpu":
            raise UsageError(
                f"--device {device_text}: --backend onnx runs on the CPU (ONNX Runtime "
                "CPUExecutionProvider); pass --device cpu or use --backend torch"
            )
        if spec is None:
            raise UsageError(f"--backend onnx needs --model DIR, {EXPORT_HINT}")
        if not (Path(spec) / MANIFEST).is_file():
            what = (
                "is not a folder" if not Path(spec).is_dir() else f"has no {MANIFEST}"
            )
            raise UsageError(
                f"--backend onnx: --model {spec} {what}; it must be {EXPORT_HINT}"
            )
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError(
                "--backend onnx needs onnxruntime: pip install 'focalcodec[onnx]'"
            )
        self.spec = spec
        self.threads = threads
        self._codec: Any = None

    def get(self, spec: str | None = None) -> Any:
        """The :class:`~focalcodec.onnx_backend.OnnxCodec` of the ``--model`` folder.

        ``spec`` is ignored: a ``.fcz`` header names a loadable model, never an export
        folder, so decoding always uses ``--model`` (and checks it against the header).
        """
        if self._codec is None:
            from .onnx_backend import OnnxCodec

            try:
                self._codec = OnnxCodec(self.spec, threads=self.threads)
            except FocalCodecError as exc:
                raise FocalCodecError(f"cannot load ONNX export: {exc}") from None
        return self._codec


# What the subcommands get from open_models: both offer get(spec) -> codec.
Models = ModelCache | OnnxModels


# ---------------------------------------------------------------------------------------
# models --details
# ---------------------------------------------------------------------------------------


def add_details_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--details NAME`` to ``focalcodec models``."""
    parser.add_argument(
        "--details",
        metavar="NAME",
        help="print the model card of NAME (packaged name, Hub id, local model "
        "directory or ONNX export folder): parameters per component, rates, latency, "
        "licence, source; nothing is downloaded for packaged names",
    )


def run_details(args: argparse.Namespace) -> int:
    """Print the card of ``args.details`` as text, or as one JSON object with --json."""
    from .modelcard import card, render

    model: Any = args.details
    if (Path(model) / MANIFEST).is_file():
        from .onnx_backend import OnnxCodec

        model = OnnxCodec(model)
    try:
        if args.json:
            print_json(card(model))
        else:
            print(render(model))
    except FocalCodecError as exc:
        raise FocalCodecError(f"no model card for {args.details!r}: {exc}") from None
    return 0
