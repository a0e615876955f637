"""Module swaps: how fast modes and ONNX tracing change a model without patching it.

Both build new modules and set them on a parent with ``setattr``; nothing assigns
``forward``, ``__class__`` or a module global. Two kinds of replacement:

* a wrapper or stand-in module built from the exact one (e.g. an int8 layer for a
  ``Linear``), through :func:`replace_modules`;
* an instance of a subclass of the exact module's class that overrides one of the core's
  named hook methods (``heads``, ``extend_context``, ``padding``, ``layer_bias``...),
  built by :func:`rebuild_as`: it shares the exact module's parameters, buffers and
  children, and the exact module is left as it was.

:func:`shallow_tree` copies the module objects of a model but not its tensors, so that a
swap on the copy never shows in the original (the ONNX exporter traces such a copy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

__all__ = ["rebuild_as", "replace_modules", "shallow_tree"]

M = TypeVar("M", bound=nn.Module)


def rebuild_as(cls: type[M], module: nn.Module) -> M:
    """An instance of ``cls``, a subclass of ``type(module)``, with ``module``'s state.

    Parameters, buffers and child modules are shared (the same tensors and objects),
    settings are copied; the registries that ``nn.Module`` keeps (parameters, buffers,
    children, hooks) are new dicts, so later swaps on either side stay on that side.
    ``cls`` must not add constructor state of its own: it adds behaviour, by overriding
    hook methods.
    """
    if not issubclass(cls, type(module)):
        raise TypeError(f"{cls.__name__} is not a subclass of {type(module).__name__}")
    new = cls.__new__(cls)
    state = {
        key: value.copy() if isinstance(value, (dict, set)) else value
        for key, value in vars(module).items()
    }
    new.__dict__.update(state)
    return new


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

    Swapping modules in the copy (with :func:`replace_modules`) leaves ``root`` as it
    was; weights are not duplicated.
    """
    new = rebuild_as(type(root), root)
    for name, child in root.named_children():
        setattr(new, name, shallow_tree(child))
    return new
