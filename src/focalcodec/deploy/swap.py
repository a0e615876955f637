"""Module swaps: how fast modes, ``jit()`` and ONNX tracing change a model without
patching it.

Every swap builds new modules through their constructors and sets them on a parent with
``setattr``; nothing assigns ``forward``, ``__class__`` or a module global, and no
instance is made without its ``__init__``. Three kinds of replacement:

* a stand-in module built from the exact one (e.g. an int8 layer for a ``Linear``),
  through :func:`replace_modules`;
* an instance of a subclass of the exact module's class that overrides one of the core's
  named hook methods (``heads``, ``extend_context``, ``padding``, ``layer_bias``...),
  built by :func:`rebuild`: the subclass is constructed from the arguments that the
  exact module records (``init_kwargs``), then given the exact module's parameters,
  buffers and children (shared, registered as its own). The exact module is left as it
  was;
* a :class:`NetworkWrapper` around one of the codec's four networks, which changes how
  the network runs (autocast, ``torch.compile``, traced graphs) and nothing else. The
  codec read what it needs of its networks when it was built
  (:class:`focalcodec.modules.NetworkFacts`), so a wrapper offers only ``net`` and its
  call.

:func:`shallow_tree` copies the module objects of a model but not its tensors, so that a
swap on the copy never shows in the original (the ONNX exporter traces such a copy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["NetworkWrapper", "rebuild", "replace_modules", "shallow_tree", "wrap"]

M = TypeVar("M", bound=nn.Module)
# The codec's networks, in pipeline order (the quantizer has no weights to wrap).
NETWORKS = ("encoder", "compressor", "decompressor", "decoder")


def rebuild(cls: type[M], module: nn.Module) -> M:
    """A ``cls`` built like ``module`` (a ``type(module)``) and sharing its state.

    ``cls`` is a subclass of ``type(module)`` that overrides hook methods. It is built
    by its constructor from ``module.init_kwargs`` (on the meta device: no weights are
    allocated), then ``module``'s own parameters, buffers and children replace the new
    ones under the same names: the same tensors and module objects, registered on the
    new module, which is in ``module``'s training mode. Later swaps inside either module
    show in both (their children are shared); a swap of the module itself in its
    parent shows only there.
    """
    if not issubclass(cls, type(module)):
        raise TypeError(f"{cls.__name__} is not a subclass of {type(module).__name__}")
    with torch.device("meta"):
        new = cls(**module.init_kwargs)
    own = (
        module.named_parameters(recurse=False),
        module.named_buffers(recurse=False),
        module.named_children(),
    )
    for name, value in (item for items in own for item in items):
        setattr(new, name, value)
    # Anything the constructor made that the module does not have is left on meta.
    if _names(new) != _names(module):
        raise TypeError(
            f"{cls.__name__}(**init_kwargs) does not rebuild this "
            f"{type(module).__name__}: its parameters, buffers or children differ"
        )
    new.training = module.training
    return new


def _names(module: nn.Module) -> tuple[set[str], ...]:
    return (
        {name for name, _ in module.named_parameters(recurse=False)},
        {name for name, _ in module.named_buffers(recurse=False)},
        {name for name, _ in module.named_children()},
    )


def replace_modules(
    root: nn.Module,
    build: Callable[[str, nn.Module], nn.Module | None],
    skip: Callable[[str, nn.Module], bool] | None = None,
) -> int:
    """Replace descendants of ``root`` in place by what ``build(name, module)`` returns.

    Modules are visited parents first; ``build`` returns None to keep a module (and then
    visit its children). A replacement's children are not visited. ``skip(name,
    module)`` true leaves a whole subtree alone. ``name`` is the dotted path from
    ``root``. Returns the number of replacements.
    """
    count = 0

    def visit(parent: nn.Module, prefix: str) -> None:
        nonlocal count
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            if skip is not None and skip(path, child):
                continue
            new = build(path, child)
            if new is None:
                visit(child, f"{path}.")
            else:
                setattr(parent, name, new)
                count += 1

    visit(root, "")
    return count


def shallow_tree(root: M) -> M:
    """A copy of ``root`` and all its submodules that shares every tensor.

    A deep copy in which every parameter and buffer stands for itself, so only the
    module objects (and their plain settings) are new. Swapping modules in the copy
    (with :func:`replace_modules`) leaves ``root`` as it was; no weight is duplicated.
    """
    memo: dict[int, Any] = {}
    for tensor in (*root.parameters(), *root.buffers()):
        memo[id(tensor)] = tensor
    return copy.deepcopy(root, memo)


class NetworkWrapper(nn.Module):
    """One of the codec's networks, ``net``, run another way; the same call.

    Subclasses override :meth:`run`. The wrapper offers nothing else of the network: the
    codec read the facts it needs when it was built (rates, hops, chunk size, length
    maps: :class:`focalcodec.modules.NetworkFacts`). In a ``state_dict`` the wrapper is
    invisible: its keys are the network's own (``encoder.feature_proj.weight``, not
    ``encoder.net.feature_proj.weight``), so checkpoints load either way.

    Parameters
    ----------
    net
        The network (an encoder, compressor, decompressor or decoder).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_state_dict_post_hook(_network_keys)
        self.register_load_state_dict_pre_hook(_wrapper_keys)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The network's ``forward``: what it takes, what it returns."""
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the network; subclasses change how."""
        return self.net(*args, **kwargs)


def _network_keys(module: nn.Module, state: dict, prefix: str, metadata: Any) -> None:
    """State-dict post-hook: ``prefix + "net." + key`` -> ``prefix + key``.

    The wrapper's entries are the last ones written when it runs, so renaming them in
    order keeps the order. Module metadata (versions, keyed by dotted path without the
    trailing dot) moves the same way: the network's own goes to the wrapper's path.
    """
    inner = f"{prefix}net."
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner) :]] = state.pop(key)
    versions = getattr(state, "_metadata", None)
    if versions is None:
        return
    for path in [p for p in versions if f"{p}.".startswith(inner)]:
        versions[(prefix + path[len(inner) :]).rstrip(".")] = versions.pop(path)


def _wrapper_keys(module: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: ``prefix + key`` -> ``prefix + "net." + key``."""
    for key in [k for k in state if k.startswith(prefix)]:
        state[f"{prefix}net.{key[len(prefix) :]}"] = state.pop(key)


def wrap(
    codec: nn.Module,
    build: Callable[[str, nn.Module], NetworkWrapper],
    names: Iterable[str] = NETWORKS,
) -> None:
    """Set ``build(name, network)`` in place of each network ``name`` of ``codec``."""
    for name in names:
        setattr(codec, name, build(name, getattr(codec, name)))
