"""The original package's streaming call form: the caller threads the states by hand.

Every ``x_to_y`` method of :class:`~focalcodec.FocalCodec` (and ``forward``) takes the
states of the stateful components it crosses, in pipeline order, and returns them after
its result when ``return_state=True``::

    state = []
    for chunk in chunks:                                   # (B, chunk_size) each
        toks, codes, sig, *state = codec(chunk, *state, return_state=True)

    enc = comp = dec = voc = ()
    toks, enc, comp = codec.sig_to_toks(chunk, enc, comp, return_state=True)
    sig, dec, voc = codec.toks_to_sig(toks, dec, voc, return_state=True)

The pipeline and which component owns each state::

    sig -encoder-> feats -compressor-> lats -quantizer-> codes | toks
        -decompressor-> qfeats -decoder(+kNN)-> sig
    (feats_to_sig enters at the decoder)

A state is the object the component returned: :class:`~focalcodec.modules.wavlm.WavLMState`
for the encoder, a list of per-layer contexts for the others, as held by
:class:`~focalcodec.streaming.steps.StreamState`. ``()``, ``[]`` and ``None`` mean "start
of stream". Feeding ``chunk_size`` samples per call gives the tokens of
:class:`~focalcodec.streaming.session.StreamingSession` and of offline processing.

Models that are not fully causal keep no state: such a call runs the offline method (with
``length``) and returns ``None`` for each state. With a causal model ``length`` is ignored,
as in the original package.

:func:`stateful` turns a method written for whole signals into one that also accepts this
form, and keeps the earlier positional forms of this package working
(``sig_to_toks(sig, length)``, ``toks_to_sig(toks, matching_set, topk)``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from ..errors import StreamingError
from ..modules.wavlm import WavLMState

__all__ = ["convert", "fit_length", "is_start", "stateful"]

# Position of each representation in the pipeline; "toks" is the codes' integer form.
_LEVEL = {"sig": 0, "feats": 1, "lats": 2, "codes": 3, "toks": 3, "qfeats": 4, "out": 5}
# Stages that keep a state, by the level they start from.
_STATEFUL = {0: "encoder", 1: "compressor", 3: "decompressor", 4: "decoder"}


def is_start(state: Any) -> bool:
    """Whether ``state`` means "start of stream": ``()``, ``[]`` or None."""
    return state is None or (
        isinstance(state, (tuple, list))
        and not isinstance(state, WavLMState)
        and len(state) == 0
    )


def _is_state_like(value: Any) -> bool:
    return value is None or isinstance(value, (tuple, list))


def _earlier_form(args: tuple, slots: int) -> bool:
    """Whether positional ``args`` (after the input) follow the signature without states.

    There, a state slot receives a tensor (``length``, ``matching_set``) or a number
    (``topk``); in the form with states, the parameter after the states (``length``,
    ``matching_set`` or ``return_state``) is never a number.
    """
    if any(not _is_state_like(a) for a in args[:slots]):
        return True
    after = args[slots] if len(args) > slots else None
    return isinstance(after, (int, float)) and not isinstance(after, bool)


def fit_length(sig: Tensor, output_length: int | None) -> Tensor:
    """Cut ``sig`` (B, T) to ``output_length``, or extend it by repeating its last sample."""
    if output_length is None or sig.shape[-1] == output_length:
        return sig
    if sig.shape[-1] > output_length:
        return sig[..., :output_length]
    missing = output_length - sig.shape[-1]
    return F.pad(sig[:, None], (0, missing), mode="replicate")[:, 0]


def _check_state(name: str, state: Any) -> Any:
    """The component state to pass on: None at the start, else the object given."""
    if is_start(state):
        return None
    expected = WavLMState if name == "encoder" else list
    if not isinstance(state, expected):
        raise StreamingError(
            f"{name}_state must be what the previous call returned (or () to start), "
            f"got {type(state).__name__}"
        )
    return state


def convert(
    codec,
    x: Tensor,
    src: str,
    dst: str,
    states: Sequence[Any],
    *,
    matching_set: Tensor | None = None,
    topk: int = 4,
    num_splits: int = 1,
    output_length: int | None = None,
) -> tuple[Tensor, list[Any]]:
    """Run ``x`` from representation ``src`` to ``dst`` through stateful components.

    Parameters
    ----------
    codec
        A :class:`~focalcodec.FocalCodec`.
    x
        Input in the ``src`` representation (``"sig"`` (B, N), ``"feats"`` (B, F, D),
        ``"lats"``/``"codes"`` (B, L, C), ``"toks"`` (B, L), ``"qfeats"`` (B, F', D)).
    dst
        ``"feats"``, ``"lats"``, ``"codes"``, ``"toks"``, ``"qfeats"`` or ``"out"`` (the
        decoded waveform).
    states
        One state per stateful component crossed, in pipeline order.
    matching_set, topk, num_splits, output_length
        As in :meth:`~focalcodec.FocalCodec.toks_to_sig` (decoder stage only).

    Returns
    -------
    The output and the new states (same order as ``states``).
    """
    if src == "sig":
        x = codec._check_sig(x)
        if dst == "out" and output_length is None:
            output_length = codec.output_length(x.shape[-1])
    elif src == "toks":
        x = codec.toks_to_codes(x)
    elif src == "codes":
        x = codec._check_codes(x)
    pending, new = list(states), []
    for level in range(_LEVEL[src], _LEVEL[dst]):
        if level == 2:
            x = codec.quantizer.lats_to_codes(x)
            continue
        name = _STATEFUL[level]
        state = _check_state(name, pending.pop(0))
        if name == "decoder" and matching_set is not None:
            x = codec.knn(x, matching_set, topk, num_splits).mean(dim=-2)
        x, state = getattr(codec, name)(x, state)
        if name == "compressor":
            x = F.normalize(x, dim=-1)
        new.append(state)
    if dst == "toks":
        x = codec.quantizer.codes_to_toks(x)
    if dst == "out":
        x = fit_length(x, output_length)
    return x, new


def forward(codec, sig: Tensor, states: Sequence[Any]) -> tuple:
    """``forward`` in the threaded form: (toks, codes, sig, 4 states)."""
    sig = codec._check_sig(sig)
    codes, front = convert(codec, sig, "sig", "codes", states[:2])
    out, back = convert(
        codec,
        codes,
        "codes",
        "out",
        states[2:],
        output_length=codec.output_length(sig.shape[-1]),
    )
    return (codec.quantizer.codes_to_toks(codes), codes, out, *front, *back)


def stateful(
    src: str,
    dst: str,
    states: Sequence[str],
    extra: Sequence[str] = (),
    output: Callable[..., Any] | None = None,
) -> Callable:
    """Give a whole-signal method the original package's ``*state, return_state`` form.

    The decorated method keeps its body, which handles whole signals; its signature
    becomes the original package's: the input, one ``<component>_state=()`` per stateful
    component crossed, the method's own parameters, ``return_state=False``, and then,
    keyword-only, the parameters in ``extra`` (this package's additions). A call that
    gives a state or asks for one goes through :func:`convert` instead of the body. A
    call whose state slots receive something that cannot be a state (a tensor or a
    number) is in this package's earlier positional form and goes to the body as is.

    Parameters
    ----------
    src, dst
        Representations the method converts between (see :func:`convert`); ``dst`` is
        ``"forward"`` for ``forward``.
    states
        Stateful components crossed, in pipeline order (``"encoder"``, ...).
    extra
        Parameters of the method that the original signature lacks.
    output
        For ``forward``: the type of its (toks, codes, sig) result.
    """

    def wrap(method: Callable) -> Callable:
        signature = _reference_signature(inspect.signature(method), states, extra)
        names = [f"{name}_state" for name in states]

        @functools.wraps(method)
        def call(self, x, *args, **kwargs):
            if _earlier_form(args, len(names)):
                return method(self, x, *args, **kwargs)
            bound = signature.bind(self, x, *args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            values = [given.pop(name) for name in names]
            return_state = given.pop("return_state")
            if not return_state and all(is_start(v) for v in values):
                return method(**given)
            if not self.causal:
                out = method(**given)
                out = tuple(out) if isinstance(out, tuple) else (out,)
                return (*out, *[None] * len(names)) if return_state else out
            result = _threaded(self, x, src, dst, values, given)
            if return_state:
                return result
            return output(*result[:3]) if dst == "forward" else result[0]

        call.__signature__ = signature
        call.__doc__ = (method.__doc__ or "").rstrip() + _STATE_NOTE
        return call

    return wrap


_STATE_NOTE = """

        States (``*_state``) and ``return_state``: the original package's streaming
        form, see :mod:`focalcodec.streaming.threaded`.
        """


def _reference_signature(
    signature: inspect.Signature, states: Sequence[str], extra: Sequence[str]
) -> inspect.Signature:
    params = list(signature.parameters.values())
    head, rest = params[:2], params[2:]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    slots = [
        inspect.Parameter(f"{name}_state", kind, default=(), annotation="Any")
        for name in states
    ]
    flag = inspect.Parameter("return_state", kind, default=False, annotation="bool")
    keyword = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest if p.name in extra
    ]
    ordinary = [p for p in rest if p.name not in extra]
    return signature.replace(
        parameters=[*head, *slots, *ordinary, flag, *keyword],
        return_annotation="Tensor | tuple",
    )


def _threaded(codec, x, src: str, dst: str, states: list, given: dict) -> tuple:
    if dst == "forward":
        return forward(codec, x, states)
    options = {
        k: given[k]
        for k in ("matching_set", "topk", "num_splits", "output_length")
        if k in given
    }
    out, new = convert(codec, x, src, dst, states, **options)
    return (out, *new)
