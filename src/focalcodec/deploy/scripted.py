"""``FocalCodec.jit()``: the codec with its four networks run as traced TorchScript graphs.

The original package compiled its networks with ``torch.jit.script``, for which it wrote
its code in the subset TorchScript accepts. This package does not (typed Python helpers,
optional states, loops over module lists that carry state), and the TorchScript compiler
rejects its encoder, compressor, decompressor and decoder. ``jit()`` uses the other
TorchScript front end, ``torch.jit.trace``:

* each network is put behind a :class:`TracedNetwork` (a
  :class:`~focalcodec.deploy.swap.NetworkWrapper`). On the first call with a given
  input shape and state layout it traces the network for exactly that shape, keeps the
  TorchScript graph (``torch.jit.ScriptModule``) and runs it; later calls with the same
  shapes run the kept graph. A streaming loop with fixed chunks therefore traces a few
  graphs once; offline calls trace once per input length (at most
  :data:`MAX_GRAPHS` graphs per network are kept, least recently used first out).
* a trace is valid for its shapes because the networks branch on shapes and on the
  presence of a state, which are part of the key, but not on tensor values, with one
  exception: the encoder's stream position. Continuing encoder steps of ``chunk_size``
  samples therefore run the position-as-tensor step of the ONNX export
  (:func:`focalcodec.deploy.onnx_graphs.encoder_step`, on a
  :func:`~focalcodec.deploy.onnx_graphs.trace_view` of the encoder), on the CPU; other
  continuing encoder calls, and continuing steps on a GPU, run eagerly.
* the quantizer (a handful of sign and bit operations) stays eager.

The result is a :class:`~focalcodec.FocalCodec` with the same methods, call forms,
parameters and ``state_dict`` keys; tokens equal the eager model's and audio agrees to
float rounding (``tests/compat/test_jit.py``). The graphs use the model's parameters
themselves; a move to another device or dtype traces new graphs. Build it for inference,
after the weights are final.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from .onnx_graphs import StartFlag, encoder_step, trace_view
from .swap import NETWORKS, NetworkWrapper, wrap

__all__ = ["MAX_GRAPHS", "TracedNetwork", "script"]

# Graphs kept per network; each is a few hundred kB of graph around shared weights.
MAX_GRAPHS = 64


def script(codec: nn.Module, classes: Sequence[type] | None = None) -> nn.Module:
    """A copy of ``codec`` whose networks run traced TorchScript graphs.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec`; it is not changed.
    classes
        Trace only the networks of these classes (e.g. ``[WavLM]``); None: all four.
        An empty sequence returns a plain copy.
    """
    chosen = _chosen(codec, classes)
    scripted = copy.deepcopy(codec)
    todo = [n for n in chosen if not isinstance(getattr(scripted, n), TracedNetwork)]
    wrap(scripted, lambda name, net: TracedNetwork(net, name), todo)
    return scripted


def _chosen(codec: nn.Module, classes: Sequence[type] | None) -> list[str]:
    if classes is None:
        return list(NETWORKS)
    classes = tuple(classes)
    kinds = {name: type(_network(getattr(codec, name))) for name in NETWORKS}
    unknown = [c for c in classes if not any(issubclass(k, c) for k in kinds.values())]
    if unknown:
        raise InputError(
            f"jit(classes=...) traces whole networks; {[c.__name__ for c in unknown]} "
            f"match none of this model's ({', '.join(k.__name__ for k in kinds.values())})"
        )
    return [name for name, kind in kinds.items() if issubclass(kind, classes)]


def _network(module: nn.Module) -> nn.Module:
    while isinstance(module, NetworkWrapper):
        module = module.net
    return module


class TracedNetwork(NetworkWrapper):
    """A network whose calls run TorchScript graphs traced per input shape.

    The eager network is ``net``; the graphs use its parameters, and ``state_dict``
    keys are its own (see :class:`~focalcodec.deploy.swap.NetworkWrapper`). A call takes
    what the eager ``forward`` takes and returns the same ``(output, state)``.

    Parameters
    ----------
    net
        The eager network.
    name
        Its slot in the codec (``"encoder"``...): continuing causal encoder steps run
        the step graph.
    """

    def __init__(self, net: nn.Module, name: str) -> None:
        super().__init__(net)
        self.network = name
        # Inputs of this many samples, with a state, are continuing encoder steps.
        eager = _network(net)
        causal_encoder = name == "encoder" and getattr(eager, "causal", False)
        self.step_size: int | None = eager.chunk_size if causal_encoder else None
        self.graphs: OrderedDict[tuple, tuple[torch.jit.ScriptModule, Any]] = (
            OrderedDict()
        )

    def __deepcopy__(self, memo: dict) -> TracedNetwork:
        # A copy traces its own graphs (they hold the weights they were traced with).
        return TracedNetwork(copy.deepcopy(self.net, memo), self.network)

    def run(self, x: Tensor, state: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        """Same inputs and outputs as the eager network's ``forward``."""
        eager = self.net
        if self.network == "encoder" and state is not None:
            # The step graph builds its index tensors on the CPU (as the ONNX export).
            if x.shape[1] == self.step_size and x.device.type == "cpu":
                return self._encoder_step(x, state)
            return eager(x, state, **kwargs)
        flat: list[Tensor] = []
        layout = _flatten(state, flat)
        key = (
            "eager",
            _shapes(x, flat),
            layout,
            tuple(sorted(kwargs.items())),
            self.training,
        )
        runner = _Flat(eager, layout, kwargs)
        return self._run(key, runner, (x, *flat))

    def _encoder_step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        flat: list[Tensor] = []
        layout = _flatten(state, flat)
        key = ("step", _shapes(x, flat), layout, self.training)
        return self._run(key, _EncoderStep(self.net, layout), (x, *flat))

    def _run(self, key: tuple, runner: nn.Module, args: tuple) -> tuple[Any, Any]:
        key = (*key, args[0].dtype, args[0].device)
        if key in self.graphs:
            self.graphs.move_to_end(key)
        else:
            self.graphs[key] = (_trace(runner, args), runner)
            while len(self.graphs) > MAX_GRAPHS:
                self.graphs.popitem(last=False)
        graph, runner = self.graphs[key]
        out = graph(*args)
        return out[0], _unflatten(runner.layout_out, iter(out[1:]))


class _Flat(nn.Module):
    """The eager network with its state as a flat tuple of tensors (for tracing)."""

    def __init__(self, eager: nn.Module, layout: Any, kwargs: dict) -> None:
        super().__init__()
        self.eager = eager
        self.layout_in = layout
        self.kwargs = kwargs
        self.layout_out: Any = None

    def forward(self, x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        state = _unflatten(self.layout_in, iter(tensors))
        y, new = self.eager(x, state, **self.kwargs)
        flat: list[Tensor] = []
        self.layout_out = _flatten(new, flat)
        return (y, *flat)


class _EncoderStep(_Flat):
    """A continuing causal encoder step with the stream position kept as a tensor.

    It runs on a trace view of the encoder (its weights, plain convolutions, the cache
    written at a tensor row), with ``first`` false: the stream has started.
    """

    def __init__(self, eager: nn.Module, layout: Any) -> None:
        super().__init__(eager, layout, {})
        self.flag = StartFlag()
        self.view = trace_view(eager, self.flag)

    def forward(self, x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        state = _unflatten(self.layout_in, iter(tensors))
        first = torch.tensor(False)
        self.flag.value = first
        y, new = encoder_step(self.view, x, state, first)
        flat: list[Tensor] = []
        self.layout_out = _flatten(new, flat)
        return (y, *flat)


def _trace(runner: nn.Module, args: tuple) -> torch.jit.ScriptModule:
    # Traced on ordinary tensors: inference-mode inputs cannot be recorded.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings name shape-dependent branches, which the cache key covers.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch.tensor() of a traced size (the encoder's position when it starts a
        # stream): the value is right for the traced shape, which the key fixes.
        warnings.filterwarnings("ignore", "To copy construct", UserWarning)
        plain = tuple(a.clone() for a in args)
        return torch.jit.trace(runner, plain, check_trace=False)


def _shapes(x: Tensor, flat: list[Tensor]) -> tuple:
    return tuple(tuple(t.shape) for t in (x, *flat))


def _flatten(node: Any, out: list[Tensor]) -> Any:
    """Append the tensors of a nested state to ``out``; return its (hashable) layout."""
    if node is None:
        return None
    if torch.is_tensor(node):
        out.append(node)
        return "tensor"
    return (type(node), tuple(_flatten(child, out) for child in node))


def _unflatten(layout: Any, tensors: Iterator[Tensor]) -> Any:
    if layout is None:
        return None
    if layout == "tensor":
        return next(tensors)
    kind, children = layout
    items = [_unflatten(child, tensors) for child in children]
    if kind is list:
        return items
    return kind(*items) if hasattr(kind, "_fields") else kind(items)
