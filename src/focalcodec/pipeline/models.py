"""Loading a codec for inference: the one loader of every entry point.

:func:`load_codec` turns a ``(source, device, backend)`` triple into a codec that is
ready to run (a :class:`focalcodec.protocol.Codec`):

* ``backend="torch"``: :meth:`FocalCodec.from_pretrained` (a packaged name, a Hub id, a
  local folder or ``.json`` file), in eval mode, on ``device``;
* ``backend="onnx"``: an :class:`~focalcodec.deploy.onnx_runtime.OnnxCodec` of a folder
  written by ``focalcodec export --format onnx`` (ONNX Runtime, on the CPU).

A codec object given as ``source`` is used as it is (a PyTorch one is put in eval mode
on ``device``). Every failure is a :class:`~focalcodec.errors.LoadError` worded the same
way, ``cannot load model 'SOURCE': reason``, and a request that cannot work on any
machine (an ONNX folder on a GPU, a folder without an export) fails before anything is
read. :class:`Models` loads each source once per run, which is what the command line,
the server and the evaluation runner need.

Example
-------
>>> from focalcodec.pipeline.models import load_codec
>>> codec = load_codec("focalcodec_50hz", device="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FocalCodecError, InputError, LoadError
from ..protocol import Codec
from ..runtime import resolve_device

__all__ = ["BACKENDS", "Models", "check_backend", "load_codec"]

BACKENDS = ("torch", "onnx")
_EXPORT_HINT = "a folder written by 'focalcodec export --format onnx -o DIR'"


def check_backend(source: Any, device: str | torch.device, backend: str) -> None:
    """Refuse, before anything is loaded, what cannot work: an unknown backend, an
    ONNX export on another device than the CPU, an ONNX source that is no export
    folder, or onnxruntime missing. Raises :class:`~focalcodec.errors.LoadError`."""
    if backend not in BACKENDS:
        raise LoadError(
            f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}"
        )
    if backend != "onnx":
        return
    _check_onnx_device(device)
    from ..deploy.onnx_export import MANIFEST_NAME

    if source is None:
        raise LoadError(f"the onnx backend needs a model folder, {_EXPORT_HINT}")
    if isinstance(source, (str, Path)) and not (Path(source) / MANIFEST_NAME).is_file():
        what = (
            "is not a folder"
            if not Path(source).is_dir()
            else f"has no {MANIFEST_NAME}"
        )
        raise LoadError(f"model {source} {what}; it must be {_EXPORT_HINT}")
    if importlib.util.find_spec("onnxruntime") is None:
        raise LoadError(
            "the onnx backend needs onnxruntime: pip install 'focalcodec[onnx]'"
        )


def load_codec(
    source: Any,
    device: str | torch.device = "auto",
    backend: str = "torch",
    *,
    threads: int | None = None,
    fast: str = "exact",
    weights: bool = True,
) -> Codec:
    """A codec ready for inference.

    Parameters
    ----------
    source
        Packaged name, Hub id, local folder or ``.json`` file (torch); an export
        folder (onnx); or a codec object.
    device
        ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:1``...; the onnx
        backend takes ``auto`` or ``cpu`` only.
    backend
        ``torch`` or ``onnx``.
    threads
        Intra-op threads of each ONNX Runtime session (None: let it decide).
    fast
        A fast mode of :func:`focalcodec.deploy.fast.optimize` (torch backend):
        ``exact`` (default), ``int8``, ``bf16``...
    weights
        False builds the architecture with random weights (benchmarks, tests).

    Returns
    -------
        The codec, in eval mode, on ``device``.
    """
    if not isinstance(source, (str, os.PathLike)):  # a codec object already
        if isinstance(source, torch.nn.Module):
            return source.eval().to(_device(device))
        return source
    check_backend(source, device, backend)
    if backend == "onnx":
        if fast != "exact" or not weights:
            raise LoadError("fast modes and random weights apply to the torch backend")
        from ..deploy.onnx_runtime import OnnxCodec

        return _loaded(source, lambda: OnnxCodec(source, threads=threads))
    where = _device(device)
    from ..codec import FocalCodec

    build = FocalCodec.from_pretrained if weights else FocalCodec.from_config
    codec = _loaded(source, lambda: build(source)).eval().to(where)
    if fast == "exact":
        return codec
    from ..deploy.fast import optimize

    return _loaded(
        source, lambda: optimize(codec, fast, device=str(where), inplace=True)
    )


def _check_onnx_device(device: str | torch.device) -> None:
    if _device_type(device) != "cpu":
        raise LoadError(
            f"the onnx backend runs on the CPU (ONNX Runtime CPUExecutionProvider), "
            f"not {device}; use device cpu or the torch backend"
        )


def _device_type(device: str | torch.device) -> str:
    if str(device) == "auto":
        return "cpu"
    try:
        return torch.device(device).type
    except (RuntimeError, ValueError, TypeError):
        raise LoadError(
            f"device {str(device)!r} is not a valid device name (auto, cpu, cuda, cuda:1)"
        ) from None


def _device(device: str | torch.device) -> torch.device:
    try:
        return resolve_device(str(device))
    except InputError as exc:
        raise LoadError(str(exc)) from None


def _loaded(source: Any, build) -> Any:
    """Run ``build``, with every failure worded as one :class:`LoadError`."""
    try:
        return build()
    except LoadError:
        raise
    except (FocalCodecError, OSError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        raise LoadError(f"cannot load model {str(source)!r}: {reason}") from None


class Models:
    """Each source loaded once, on one device and backend (a run's model cache).

    Parameters
    ----------
    device, backend, threads, fast
        As for :func:`load_codec`; the device is resolved now, so that a bad one stops
        a run before any work.
    """

    def __init__(
        self,
        device: str = "auto",
        backend: str = "torch",
        threads: int | None = None,
        fast: str = "exact",
    ) -> None:
        if backend not in BACKENDS:
            raise LoadError(
                f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}"
            )
        if backend == "onnx":
            _check_onnx_device(device)
        self.backend = backend
        self.threads = threads
        self.fast = fast
        self.device = _device("cpu" if backend == "onnx" else device)
        self._codecs: dict[str, Any] = {}

    def check(self, source: Any) -> None:
        """Refuse a source that cannot load on this backend, before any work."""
        check_backend(source, self.device, self.backend)

    def get(self, source: str) -> Codec:
        """The codec of ``source``, loaded on first use."""
        if source not in self._codecs:
            self._codecs[source] = load_codec(
                source, self.device, self.backend, threads=self.threads, fast=self.fast
            )
        return self._codecs[source]
