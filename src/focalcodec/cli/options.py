"""Options shared by several verbs, and the model loader they configure.

Defined once here: ``--device``/``--batch-size``/``--force``/``--quiet`` (the common
options), ``--model``, ``--backend``, the input/output arguments of batch verbs and the
audio output options. Device names are checked by :func:`focalcodec.runtime.
resolve_device`, so a bad ``--device`` is a usage error (exit status 2) before any work.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import FocalCodecError, InputError, UsageError

__all__ = [
    "BACKENDS",
    "ModelCache",
    "Models",
    "OnnxModels",
    "add_audio_output",
    "add_backend",
    "add_common",
    "add_inputs_outputs",
    "add_model",
    "add_skip_existing",
    "device_name",
    "non_negative_int",
    "open_models",
    "positive_int",
    "refuse_onnx",
    "torch_device",
]

BACKENDS = ("torch", "onnx")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
ONNX_MANIFEST = "manifest.json"
_EXPORT_HINT = "a folder written by 'focalcodec export --format onnx -o DIR'"


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _int_at_least(text, 0)


def device_name(text: str) -> str:
    """argparse type: a well-formed device name (whether this machine has it is checked
    when the model is loaded, after backend-specific checks)."""
    import torch

    if text != "auto":
        try:
            torch.device(text)
        except (RuntimeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a device name (auto, cpu, cuda, cuda:1)"
            ) from None
    return text


def add_common(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    """``--device``, ``--batch-size`` (when ``batch``), ``--force`` and ``--quiet``."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--device",
        default="auto",
        type=device_name,
        help="cpu, cuda, cuda:1, ... (default: auto, a GPU when there is one)",
    )
    if batch:
        group.add_argument(
            "--batch-size",
            type=positive_int,
            default=1,
            help="files per step; equal-length clips share one forward pass "
            "(default: 1)",
        )
    group.add_argument(
        "--force", action="store_true", help="overwrite existing output files"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or warnings"
    )


def add_skip_existing(parser: argparse.ArgumentParser) -> None:
    """``--skip-existing``: finish an interrupted batch, keeping the outputs it made."""
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that already exist alone and do the rest (outputs are "
        "written atomically, so an existing one is complete)",
    )


def add_model(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``-m/--model``: a packaged name, Hub id or local folder."""
    where = f"default: {default}" if default else "default: the model named in the file"
    parser.add_argument(
        "-m",
        "--model",
        default=default,
        help=f"packaged name, Hugging Face repo id or local directory ({where})",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    """``--backend {torch,onnx}``."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: the PyTorch model (default); onnx: run an ONNX export with ONNX "
        "Runtime on the CPU (--model is then the export folder)",
    )


def add_inputs_outputs(parser: argparse.ArgumentParser, what: str, output: str) -> None:
    """Positional inputs (files, folders or -) and ``-o/--output``."""
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", help=f"{what}, directories, or - for stdin"
    )
    parser.add_argument(
        "-o", "--output", required=True, help=f"{output}, a directory, or - for stdout"
    )


def add_audio_output(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--sample-rate`` of verbs that write audio."""
    parser.add_argument(
        "--format",
        choices=AUDIO_FORMATS,
        help="output audio format (default: from the -o suffix, else wav)",
    )
    parser.add_argument(
        "--sample-rate",
        default=None,
        help="resample the output: a rate in Hz, or 'source' for the original input "
        "rate (default: the model's output rate)",
    )


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def torch_device(text: str):
    """The ``torch.device`` of a ``--device`` value; a usage error if there is none."""
    from ..runtime import resolve_device

    try:
        return resolve_device(text)
    except InputError as exc:
        raise UsageError(f"--device: {exc}") from None


class ModelCache:
    """Load each model once per run, on the requested device, in eval mode."""

    def __init__(self, device_text: str) -> None:
        # Resolved now, so that a bad --device stops the run before any work starts.
        self.device = torch_device(device_text)
        self._models: dict[str, Any] = {}

    def get(self, spec: str):
        if spec not in self._models:
            from ..codec import FocalCodec

            try:
                codec = FocalCodec.from_pretrained(spec)
            except FocalCodecError as exc:
                raise FocalCodecError(f"cannot load model {spec!r}: {exc}") from None
            self._models[spec] = codec.eval().to(self.device)
        return self._models[spec]


class OnnxModels:
    """Stand-in for :class:`ModelCache` that opens an ONNX export.

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
            raise UsageError(f"--backend onnx needs --model DIR, {_EXPORT_HINT}")
        if not (Path(spec) / ONNX_MANIFEST).is_file():
            what = (
                "is not a folder"
                if not Path(spec).is_dir()
                else f"has no {ONNX_MANIFEST}"
            )
            raise UsageError(
                f"--backend onnx: --model {spec} {what}; it must be {_EXPORT_HINT}"
            )
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError(
                "--backend onnx needs onnxruntime: pip install 'focalcodec[onnx]'"
            )
        self.spec = spec
        self.threads = threads
        self._codec: Any = None

    def get(self, spec: str | None = None) -> Any:
        """The :class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` of ``--model``.

        ``spec`` is ignored: a ``.fcz`` header names a loadable model, never an export
        folder, so decoding always uses ``--model`` (and checks it against the header).
        """
        if self._codec is None:
            from ..deploy.onnx_runtime import OnnxCodec

            try:
                self._codec = OnnxCodec(self.spec, threads=self.threads)
            except FocalCodecError as exc:
                raise FocalCodecError(f"cannot load ONNX export: {exc}") from None
        return self._codec


# What the verbs get from open_models: both offer get(spec) -> codec.
Models = ModelCache | OnnxModels


def open_models(args: argparse.Namespace) -> Models:
    """The model loader for ``args.backend``; bad combinations stop the run here."""
    if getattr(args, "backend", "torch") == "onnx":
        return OnnxModels(args.model, args.device)
    return ModelCache(args.device)


def refuse_onnx(args: argparse.Namespace, command: str, reason: str) -> None:
    """Stop a verb that the ONNX backend cannot run."""
    if getattr(args, "backend", "torch") == "onnx":
        raise UsageError(
            f"'focalcodec {command}' cannot use --backend onnx: {reason}; use "
            "--backend torch"
        )
