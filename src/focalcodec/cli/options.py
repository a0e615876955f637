"""Options shared by several verbs, and the model loader they configure.

Defined once here: ``--device``/``--batch-size``/``--force``/``--quiet`` (the common
options), ``--model``, ``--backend``, ``--threads``, the input/output arguments of batch
verbs, the audio output options and the argparse number types. Device names are checked by :func:`focalcodec.runtime.
resolve_device`, so a bad ``--device`` is a usage error (exit status 2) before any work.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import InputError, LoadError, UsageError
from ..pipeline.models import BACKENDS

if TYPE_CHECKING:
    from ..pipeline.models import Models

__all__ = [
    "BACKENDS",
    "add_audio_output",
    "add_backend",
    "add_common",
    "add_device",
    "add_inputs_outputs",
    "add_kernels",
    "add_model",
    "add_skip_existing",
    "add_threads",
    "apply_kernels",
    "apply_threads",
    "device_name",
    "non_negative_int",
    "open_models",
    "positive_float",
    "positive_int",
    "refuse_onnx",
    "torch_device",
]

AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
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


def positive_float(text: str) -> float:
    """argparse type: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


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
    add_device(group)
    if batch:
        group.add_argument(
            "--batch-size",
            type=positive_int,
            default=1,
            help="files per step; equal-length clips share one forward pass "
            "(default: 1)",
        )
    add_kernels(group)
    group.add_argument(
        "--force", action="store_true", help="overwrite existing output files"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or warnings"
    )


def add_device(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto"
) -> None:
    """``--device NAME``: where the model runs (checked by :func:`device_name`)."""
    shown = "auto, a GPU when there is one" if default == "auto" else default
    parser.add_argument(
        "--device",
        default=default,
        type=device_name,
        help=f"cpu, cuda, cuda:1, ... (default: {shown})",
    )


def add_threads(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "torch CPU threads",
) -> None:
    """``--threads N`` (see :func:`apply_threads`)."""
    parser.add_argument("--threads", type=positive_int, metavar="N", help=help)


def apply_threads(args: argparse.Namespace) -> None:
    """Give torch ``--threads`` CPU threads (when given)."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_kernels(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--kernels NAME``: the CPU kernel backend (see :func:`apply_kernels`)."""
    parser.add_argument(
        "--kernels",
        metavar="NAME",
        default=None,
        help="CPU kernel backend of exact mode: auto, onednn, blas (mkl) or plain "
        "(default: $FOCALCODEC_KERNELS, else auto; see 'focalcodec info --system')",
    )


def apply_kernels(args: argparse.Namespace) -> None:
    """Run this process's products on ``--kernels`` (when given); a usage error for a
    name that is not a backend or one this machine cannot run."""
    name = getattr(args, "kernels", None)
    if name is None:
        return
    from ..modules import kernels

    try:
        kernels.set_backend(name)
    except InputError as exc:
        raise UsageError(f"--kernels: {exc}") from None


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


def open_models(args: argparse.Namespace, device: str | None = None) -> Models:
    """The run's model cache for ``--backend``, ``--device`` and ``--model``
    (:class:`focalcodec.pipeline.models.Models`); ``device`` overrides ``--device``.

    What cannot work (a bad device, an ONNX backend without an export folder, no
    onnxruntime) is a usage error here, before any work.
    """
    from ..pipeline.models import Models

    backend = getattr(args, "backend", "torch")
    if backend == "onnx" and args.model is None:
        raise UsageError(f"--backend onnx needs --model DIR, {_EXPORT_HINT}")
    try:
        models = Models(device or args.device, backend, getattr(args, "threads", None))
        if backend == "onnx":
            models.check(args.model)
    except LoadError as exc:
        raise UsageError(
            f"--{'backend' if backend == 'onnx' else 'device'}: {exc}"
        ) from None
    return models


def refuse_onnx(args: argparse.Namespace, command: str, reason: str) -> None:
    """Stop a verb that the ONNX backend cannot run."""
    if getattr(args, "backend", "torch") == "onnx":
        raise UsageError(
            f"'focalcodec {command}' cannot use --backend onnx: {reason}; use "
            "--backend torch"
        )
