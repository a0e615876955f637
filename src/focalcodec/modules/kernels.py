"""Which kernels run the model's float32 matrix products on a CPU.

The one owner of that choice, and the only module of the package that calls private
torch operators. Backends (:func:`available` lists those this machine can run):

* ``onednn``: oneDNN, the library inside torch's CPU wheels, through the operators
  that torch's own compiler emits when it freezes a model
  (``torch.ops.mkldnn._linear_pointwise``, ``_convolution_pointwise`` and the
  ``_reorder_*_weight`` that pack their weights; :func:`onednn_ops`). Products over
  many rows read the weight as it is; products over at most :data:`FEW_ROWS` rows (the
  steps of a live stream) use a copy of the weight in oneDNN's blocked layout, made
  once per weight on first use (:func:`prepare` makes them ahead) and dropped with the
  weight. Grouped and depthwise convolutions (:func:`conv2d`) keep a packed weight too.
* ``blas``: torch's BLAS (MKL in the x86 wheels) through ``F.linear``, with the weight
  on the left for few rows, an order that MKL runs faster there.
* ``plain``: ``F.linear`` as torch dispatches it.

Whatever the backend, training (autograd on a weight or an input), autocast, tracing,
compiling, other dtypes than float32 and every device but the CPU (cuBLAS on a GPU)
take ``F.linear``. Every backend is exact: results equal ``F.linear``'s up to float
rounding (about 1e-7 relative; ``tests/modules/test_kernels.py``).

Choice, first match wins: :func:`set_backend` or :func:`use` from Python, the
environment variable ``FOCALCODEC_KERNELS`` (``auto``, ``onednn``, ``blas`` or its
alias ``mkl``, ``plain``), else ``auto``: the fastest backend of a short calibration
(:func:`calibrate`, about a second, on products shaped like the codec's), run once per
machine and kept in ``$XDG_CACHE_HOME/focalcodec/kernels.json`` under the CPU model, its
vector flags, the torch version and the thread count. :func:`describe` reports it.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from . import calibration

__all__ = [
    "BACKENDS",
    "ENV",
    "FEW_ROWS",
    "MAX_PACKED_ROWS",
    "available",
    "backend",
    "calibrate",
    "conv2d",
    "describe",
    "linear",
    "packed_up_to",
    "packs_convolutions",
    "prepare",
    "release",
    "routed",
    "set_backend",
    "use",
]

BACKENDS = ("onednn", "blas", "plain")
ALIASES = {"mkl": "blas"}
ENV = calibration.ENV
# Products over at most this many rows use the packed weight (oneDNN) or the weight on
# the left (BLAS): streaming steps (4 frames). Above, both read the weight as it is, as
# fast as a packed copy there, so offline processing keeps no second copy of a weight.
FEW_ROWS = 8
# Many streams stepped together (streaming.batch) make products of 4 rows per stream:
# within `packed_up_to(rows)` (this thread only) products of up to `rows` rows use the
# packed weight too, at most this many (packed products of 16 to 64 rows give each row
# the numbers it gets alone, and run 1.5-3x faster than reading the weight as it is).
MAX_PACKED_ROWS = 64
# The BLAS backend puts the weight on the left up to this many rows (faster in MKL for
# 1 to 4 rows, slower from 8 on, on the development CPU).
BLAS_FEW_ROWS = 4
# Smaller weights take F.linear: oneDNN's set-up per call (~15 us) outweighs the
# arithmetic of, e.g., the attention gates' 64 x 8 projection.
SMALL_WEIGHT = 2**15


# -- the private operators -------------------------------------------------------------


class OneDnnOps(NamedTuple):
    """oneDNN's operators as torch registers them for its compiler's frozen graphs.

    ``linear(x, weight, bias, "none", [], "")`` is ``x @ weight.T + bias`` with a dense
    or packed (N, K) weight; ``pack_linear(weight, rows)`` packs one for products over
    about ``rows`` rows. ``conv(x, weight, bias, padding, stride, dilation, groups,
    "none", [], "")`` is a 2-D convolution (dense or packed weight) that keeps a
    channels-last input's layout; ``pack_conv(weight, padding, stride, dilation,
    groups, input_size)`` packs a convolution weight.
    """

    linear: Callable
    pack_linear: Callable
    conv: Callable
    pack_conv: Callable


def onednn_ops() -> OneDnnOps | None:
    """oneDNN's operators (:class:`OneDnnOps`), or None when this torch lacks them."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        ops = torch.ops.mkldnn
        return OneDnnOps(
            ops._linear_pointwise.default,
            ops._reorder_linear_weight.default,
            ops._convolution_pointwise.default,
            ops._reorder_convolution_weight.default,
        )
    except (AttributeError, RuntimeError):
        return None


def _self_check() -> str | None:
    """None if oneDNN's operators give torch's own results here, else why not."""
    ops = onednn_ops()
    if ops is None:
        return "this torch build has no oneDNN linear and convolution operators"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 96, generator=gen)
    w = torch.randn(80, 96, generator=gen)
    b = torch.randn(80, generator=gen)
    want = [F.linear(x, w, b)] * 2
    taps = torch.randn(96, 1, 1, 3, generator=gen)  # depthwise, channel-last input
    image = x.T[None, :, None, :]  # (1, 96, 1, 5), channels-last strides
    want.append(F.conv2d(image, taps, None, groups=96))
    try:
        with torch.no_grad():
            got = [
                ops.linear(x, w, b, "none", [], ""),
                ops.linear(x, ops.pack_linear(w, 5), b, "none", [], ""),
                ops.conv(
                    image,
                    ops.pack_conv(taps, [0, 0], [1, 1], [1, 1], 96, list(image.shape)),
                    None,
                    [0, 0],
                    [1, 1],
                    [1, 1],
                    96,
                    "none",
                    [],
                    "",
                ),
            ]
    except RuntimeError as exc:
        return f"oneDNN operators failed: {exc}"
    for y, ref in zip(got, want, strict=True):
        if y.shape != ref.shape or not torch.allclose(y, ref, rtol=1e-5, atol=1e-5):
            return "oneDNN operators disagree with torch's on this machine"
    return None


# -- choosing the backend --------------------------------------------------------------


class _Choice:
    """The process-wide choice: what was asked for, what runs, and why."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.override: str | None = None  # set_backend / use
        self.resolved: tuple[str, str] | None = None  # (backend, reason)
        self.unavailable: dict[str, str] | None = None
        self.record: dict | None = None  # this process's calibration, if it made one


_CHOICE = _Choice()


def _canonical(name: str, source: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in (*BACKENDS, "auto"):
        prefix = f"{source}: " if source else ""
        raise InputError(
            f"{prefix}{name!r} is not a kernel backend; choose auto, "
            f"{', '.join(BACKENDS)} (or mkl, an alias of blas)"
        )
    return key


def unavailable() -> dict[str, str]:
    """Backends this machine cannot run, each with the reason."""
    with _CHOICE.lock:
        if _CHOICE.unavailable is None:
            missing = {}
            reason = _self_check()
            if reason is not None:
                missing["onednn"] = reason
            _CHOICE.unavailable = missing
        return dict(_CHOICE.unavailable)


def available() -> list[str]:
    """The backends this machine can run, in the order of :data:`BACKENDS`."""
    missing = unavailable()
    return [name for name in BACKENDS if name not in missing]


def set_backend(name: str | None) -> None:
    """Run matrix products on ``name`` from now on (None or ``auto``: choose again).

    Raises :class:`~focalcodec.errors.InputError` for an unknown name or a backend this
    machine cannot run.
    """
    key = None if name is None else _canonical(name, "")
    if key is not None and key != "auto" and key not in available():
        raise InputError(
            f"kernel backend {key!r} is not available here: {unavailable()[key]}; "
            f"available: {', '.join(available())}"
        )
    with _CHOICE.lock:
        _CHOICE.override = None if key == "auto" else key
        _CHOICE.resolved = None
        if name is None:  # look again: the environment or torch's settings may differ
            _CHOICE.unavailable = None


@contextlib.contextmanager
def use(name: str | None) -> Iterator[None]:
    """Run the products of a ``with`` block on ``name`` (process-wide), then restore."""
    with _CHOICE.lock:
        before = _CHOICE.override
    set_backend(name)
    try:
        yield
    finally:
        with _CHOICE.lock:
            _CHOICE.override = before
            _CHOICE.resolved = None


def backend() -> str:
    """The backend that CPU float32 products run on now (resolving ``auto``)."""
    resolved = _CHOICE.resolved
    if resolved is None:
        resolved = _resolve()
    return resolved[0]


def _resolve() -> tuple[str, str]:
    with _CHOICE.lock:
        if _CHOICE.resolved is not None:
            return _CHOICE.resolved
        if _CHOICE.override is not None:
            _CHOICE.resolved = (_CHOICE.override, "set from Python")
            return _CHOICE.resolved
        asked = calibration.requested()
        key = "auto" if asked is None else _canonical(asked, f"{ENV}")
        if key != "auto":
            if key not in available():
                raise InputError(
                    f"{ENV}={asked}: backend {key!r} is not available here: "
                    f"{unavailable()[key]}; unset it or choose "
                    f"{', '.join(available())}"
                )
            _CHOICE.resolved = (key, f"{ENV}={asked}")
            return _CHOICE.resolved
        _CHOICE.resolved = _auto()
        return _CHOICE.resolved


def _auto() -> tuple[str, str]:
    names = available()
    if names == ["plain"]:
        return "plain", unavailable().get("onednn", "only the plain path is available")
    record = _record()
    if record is None or not set(names) <= set(record["rates"]):
        record = calibrate()
    best = calibration.fastest(record, names)
    return best, f"fastest in the calibration of {record['date']}"


def _record() -> dict | None:
    """The calibration that applies here: this process's own, else the kept one."""
    record = _CHOICE.record
    if record is not None and record.get("machine") == calibration.machine_key():
        return record
    return calibration.load()


def calibrate(save: bool = True) -> dict:
    """Time every available backend on products shaped like the codec's.

    Returns the record that ``auto`` chooses by (rates in GFLOP/s per backend; see
    :func:`focalcodec.modules.calibration.measure`) and, with ``save``, keeps it for
    this machine unless the machine was too busy for the figures to mean much.
    """
    with _CHOICE.lock:
        record = calibration.measure(available(), linear_on)
        if save and calibration.trustworthy(record):
            calibration.save(record)
        _CHOICE.record = record
        _CHOICE.resolved = None
        return record


def describe() -> dict:
    """What runs the matrix products here, and why: for ``focalcodec info --system``.

    Keys: ``backend``, ``reason``, ``available``, ``unavailable`` (name -> reason),
    ``cpu`` (model and vector flags), ``torch``, ``threads``, ``few_rows``, ``held_mb``
    (weights kept in other layouts, MB),
    ``calibration`` (the record auto chose by, or None), ``cuda`` (what a GPU uses).
    """
    name, reason = _CHOICE.resolved or _resolve()
    return {
        "backend": name,
        "reason": reason,
        "available": available(),
        "unavailable": unavailable(),
        "cpu": calibration.cpu_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "few_rows": FEW_ROWS,
        "held_mb": round(_STORE.nbytes() / 2**20, 1),
        "calibration": _record(),
        "cuda": "cuBLAS through F.linear (unchanged)"
        if torch.cuda.is_available()
        else None,
    }


# -- the products ----------------------------------------------------------------------


def _fast_path_allowed(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """False where only F.linear may run (see :func:`_inference_fp32`), and for small
    weights."""
    return _inference_fp32(x, weight, bias) and weight.numel() >= SMALL_WEIGHT


def _inference_fp32(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """True for CPU float32 inference: no autograd, autocast, tracing or compiling."""
    # Traced and compiled graphs record torch's own operators (ONNX export, jit()).
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if weight.dtype != torch.float32:
        return False
    if x.layout != torch.strided or weight.layout != torch.strided:
        return False
    if torch.is_grad_enabled() and (
        x.requires_grad
        or weight.requires_grad
        or (bias is not None and bias.requires_grad)
    ):
        return False
    return not torch.is_autocast_enabled("cpu")


def linear(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, owner: Tensor | None = None
) -> Tensor:
    """``x @ weight.T + bias`` on the backend in use (``F.linear`` where it must).

    Parameters
    ----------
    x
        Input, shape (..., K).
    weight
        (N, K), possibly a view of ``owner`` (a convolution's weight read as a matrix).
    bias
        (N,) or None.
    owner
        The parameter that ``weight`` is read from (default: ``weight``); packed copies
        are kept per owner and made again when it changes (new storage or an in-place
        update).

    Returns
    -------
    Output, shape (..., N).
    """
    if not _fast_path_allowed(x, weight, bias):
        return F.linear(x, weight, bias)
    return linear_on(backend(), x, weight, bias, owner)


def routed(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> bool:
    """True when a product of ``x`` with ``weight`` runs on a backend other than
    ``plain``: callers may then reshape work into products that pay there."""
    return _fast_path_allowed(x, weight, bias) and backend() != "plain"


def linear_on(
    name: str, x: Tensor, weight: Tensor, bias: Tensor | None, owner: Tensor | None
) -> Tensor:
    """:func:`linear` on backend ``name``, without the checks of when it may run."""
    if name == "plain":
        return F.linear(x, weight, bias)
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if name == "onednn":
        if 0 < rows <= getattr(_LOCAL, "few_rows", FEW_ROWS):
            weight = _packed(weight if owner is None else owner, weight, rows)
        return _ONEDNN.linear(x, weight, bias, "none", [], "")
    if 0 < rows <= BLAS_FEW_ROWS:
        flat = x.reshape(rows, x.shape[-1]).T
        if bias is None:
            y = torch.mm(weight, flat)
        else:
            y = torch.addmm(bias[:, None], weight, flat)
        return y.T.contiguous().view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)


_LOCAL = threading.local()


@contextlib.contextmanager
def packed_up_to(rows: int) -> Iterator[None]:
    """Let this thread's products over up to ``rows`` rows (at most
    :data:`MAX_PACKED_ROWS`) use packed weights for the duration of a ``with`` block.

    For callers that step many streams at once (4 rows each): offline work in other
    threads keeps :data:`FEW_ROWS`, so it never makes packed copies it does not need.
    """
    if not 0 < rows <= MAX_PACKED_ROWS:
        raise InputError(
            f"packed_up_to: rows must be 1 to {MAX_PACKED_ROWS}, got {rows}"
        )
    before = getattr(_LOCAL, "few_rows", FEW_ROWS)
    _LOCAL.few_rows = max(rows, before)
    try:
        yield
    finally:
        _LOCAL.few_rows = before


def conv2d(
    x: Tensor, conv: nn.Conv1d, weight: Tensor | None = None, bias: bool = True
) -> Tensor:
    """``conv`` as a 2-D convolution of ``x`` (B, C_in, 1, T) in channels-last layout.

    Grouped and depthwise convolutions on the ``onednn`` backend (inference, CPU
    float32) use a copy of the weight packed once in oneDNN's layout: torch's own
    convolution repacks it at every call, which costs more than the arithmetic over a
    streaming step's few frames, and WavLM's positional convolution runs faster on the
    packed weight over many frames too (``docs/performance.md``). Dense convolutions,
    whose repacking is cheap next to their arithmetic, keep no copy: ``F.conv2d``, as
    everywhere else. ``weight``: a (C_out, C_in / groups, 1, k)
    view of ``conv.weight`` kept ready by the caller, if any. Output (B, C_out, 1, T'),
    channels-last.
    """
    groups, (stride,) = conv.groups, conv.stride
    dense = conv.weight.unsqueeze(2) if weight is None else weight
    b = conv.bias if bias else None
    if groups == 1 or not _conv_on_onednn(x, conv.weight, b):
        return F.conv2d(x, dense, b, stride=(1, stride), groups=groups)
    geometry = ([0, 0], [1, stride], [1, 1], groups)
    packed = _STORE.get(
        conv.weight,
        f"onednn-conv:{stride}:{groups}",
        lambda: _ONEDNN.pack_conv(dense.detach(), *geometry, list(x.shape)),
    )
    return _ONEDNN.conv(x, packed, b, *geometry, "none", [], "")


def packs_convolutions(x: Tensor, weight: Tensor) -> bool:
    """True when :func:`conv2d` runs a grouped or depthwise convolution of ``x`` with
    ``weight`` on oneDNN with a packed weight here."""
    return _conv_on_onednn(x, weight, None)


def _conv_on_onednn(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return _inference_fp32(x, weight, bias) and backend() == "onednn"


_ONEDNN = onednn_ops()


class _Store:
    """Copies of weights in other layouts, kept per owning parameter, dropped with it.

    An entry is keyed by the owner's identity and a tag (which layout); it is valid
    while the owner keeps the same storage, shape and version counter (an in-place
    update bumps it), and is made again otherwise. No lock: the callback that drops an
    entry runs whenever the garbage collector frees an owner, possibly in the middle
    of another call here, so every access is a single dict operation (atomic under
    the GIL); two threads packing the same weight at once merely pack it twice.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[int, str], tuple[weakref.ref, tuple, Tensor]] = {}

    def get(self, owner: Tensor, tag: str, make: Callable[[], Tensor]) -> Tensor:
        key = _state_key(owner)
        slot = (id(owner), tag)
        entry = self.entries.get(slot)
        if entry is not None and entry[0]() is owner and entry[1] == key:
            return entry[2]
        # Normal tensors even under inference mode: later calls may run outside it.
        with torch.inference_mode(False), torch.no_grad():
            copy = make()
        entries = self.entries

        def drop(ref: weakref.ref, slot: tuple = slot) -> None:
            if entries.get(slot, (None,))[0] is ref:
                entries.pop(slot, None)

        self.entries[slot] = (weakref.ref(owner, drop), key, copy)
        return copy

    def clear(self, owners: set[int] | None = None) -> int:
        doomed = [s for s in self.entries.copy() if owners is None or s[0] in owners]
        for slot in doomed:
            self.entries.pop(slot, None)
        return len(doomed)

    def nbytes(self) -> int:
        copies = [entry[2] for entry in self.entries.copy().values()]
        return sum(c.numel() * c.element_size() for c in copies)


def _state_key(owner: Tensor) -> tuple:
    try:
        version = owner._version
    except RuntimeError:  # inference tensors have no version counter
        version = -1
    return (owner.data_ptr(), version, tuple(owner.shape), owner.dtype, owner.device)


def _packed(owner: Tensor, weight: Tensor, rows: int) -> Tensor:
    """``weight`` (a view of ``owner``) in oneDNN's layout for products of few rows."""
    tag = f"onednn:{tuple(weight.shape)}:{weight.stride()}"
    return _STORE.get(
        owner, tag, lambda: _ONEDNN.pack_linear(weight.detach().contiguous(), rows)
    )


_STORE = _Store()


def prepare(module: nn.Module, rows: int = 4) -> int:
    """Pack the weights of ``module``'s Linear layers now, for products of ``rows`` rows.

    A streaming session may call this before its first step, so that the step does not
    pay for packing them (most of a second for a full-size model; the convolutions'
    few copies are still made by the first step). Nothing happens unless the backend in
    use is ``onednn``. Returns the number of weights packed.
    """
    if backend() != "onednn" or not 0 < rows <= MAX_PACKED_ROWS:
        return 0
    count = 0
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and layer.weight.device.type == "cpu":
            weight = layer.weight
            if weight.dtype == torch.float32 and weight.numel() >= SMALL_WEIGHT:
                _packed(weight, weight, rows)
                count += 1
    return count


def release(module: nn.Module | None = None) -> int:
    """Drop the packed copies of ``module``'s weights (all when None); returns how many."""
    if module is None:
        return _STORE.clear()
    return _STORE.clear({id(p) for p in module.parameters()})
