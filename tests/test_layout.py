"""The package's layout rules (docs/architecture.md), read from the source with ``ast``.

Imports point one way: leaves (fcz, files) <- core <- tokens, deploy <- pipeline <-
features (eval, train, probe, lm, serve, ...) <- cli, checked on module-level imports (a
function may import an optional outer layer lazily). No exceptions are listed. No import cycles, counting every import as ``../shared/tools/layout`` does; no
file over 600 lines; at most 10 top-level modules; every exception class in errors.py.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

SRC = REPO / "src"
PACKAGE = SRC / "focalcodec"
CORE_PACKAGES = {"modules", "streaming"}
# Leaf packages below the core: they know bytes and files, never the model.
LEAF_PACKAGES = {"fcz", "files"}
# Packages with a layer of their own; every other subpackage is a feature.
OWN_LAYER = {"tokens", "deploy", "pipeline", "cli"}
# What each layer must not import at module level (docs/architecture.md), from the
# inside out: leaf < core < tokens, deploy < pipeline < feature < cli.
FORBIDDEN = {
    "leaf": {"core", "tokens", "deploy", "pipeline", "feature", "cli"},
    "core": {"tokens", "deploy", "pipeline", "feature", "cli"},
    "tokens": {"deploy", "pipeline", "feature", "cli"},
    "deploy": {"tokens", "pipeline", "feature", "cli"},
    "pipeline": {"feature", "cli"},
    "feature": {"cli"},
    "cli": set(),
    "entry": set(),
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def layer(module: str) -> str:
    """leaf, core, tokens, deploy, pipeline, feature, cli or entry.

    Every top-level module is core (``codec``, ``config``, ``pretrained``, ``errors``,
    ``runtime`` and any added later), and so are ``modules/`` and ``streaming/``;
    ``fcz/``, ``files/`` and ``errors`` are leaves; every subpackage without a layer of its own
    (``eval``, ``train``, ``probe``, ``lm``, ``serve``, ...) is a feature.
    """
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "entry"  # `python -m` entry points start the command line
    if module == "focalcodec.errors":
        return "leaf"  # imports nothing; every layer raises its exceptions
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").is_file():
        return "core"
    if parts[1] in CORE_PACKAGES:
        return "core"
    if parts[1] in LEAF_PACKAGES:
        return "leaf"
    return parts[1] if parts[1] in OWN_LAYER else "feature"


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Package modules that an import statement names (as the layout tool resolves)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            if not MODULES[module].name == "__init__.py":
                parts = parts[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    # A module importing its own package (``from . import __version__``) is no tie.
    return [
        n
        for n in names
        if n in MODULES and n != module and not module.startswith(n + ".")
    ]


def imports(module: str, top_level_only: bool) -> set[str]:
    """What ``module`` imports; ``top_level_only`` skips imports inside functions."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.update(_targets(module, child))
            visit(child)

    visit(tree)
    return found


def test_the_layers_are_known() -> None:
    layers = {m: layer(m) for m in MODULES}
    assert layers["focalcodec"] == layers["focalcodec.streaming.session"] == "core"
    assert layers["focalcodec.errors"] == "leaf"
    assert layers["focalcodec.eval.runner"] == layers["focalcodec.train.trainer"]
    assert layers["focalcodec.train.__main__"] == "entry"
    assert (
        layers["focalcodec.fcz.bitstream"] == layers["focalcodec.files.audio"] == "leaf"
    )
    assert layers["focalcodec.tokens.dataset"] == "tokens"
    assert layers["focalcodec.pipeline.compress"] == "pipeline"
    assert set(FORBIDDEN) - {"entry"} <= set(layers.values())


def test_imports_point_one_way() -> None:
    wrong = []
    for module in MODULES:
        for target in sorted(imports(module, top_level_only=True)):
            if layer(target) in FORBIDDEN[layer(module)]:
                wrong.append(f"{module} ({layer(module)}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_leaves_import_only_errors_and_leaves() -> None:
    """Not even lazily: nothing in fcz/ or files/ can reach the model."""
    leaves = {m for m in MODULES if layer(m) == "leaf"}
    assert leaves, "no leaf package found"
    for module in leaves:
        allowed = leaves
        assert imports(module, top_level_only=False) <= allowed, module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = {m: imports(m, top_level_only=False) for m in MODULES}
    assert _cycles(graph) == []


def test_no_file_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert not long, long


def test_at_most_ten_top_level_modules() -> None:
    top = [
        p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")
    ]
    assert len(top) <= 10, top


def test_every_exception_lives_in_errors() -> None:
    elsewhere = []
    for module, path in MODULES.items():
        if module == "focalcodec.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            if any(b.endswith(("Error", "Exception", "Warning")) for b in bases):
                elsewhere.append(f"{module}.{node.name}")
    assert not elsewhere, elsewhere


@pytest.mark.parametrize(
    "module",
    [
        "focalcodec",
        "focalcodec.streaming.session",
        "focalcodec.tokens.dataset",
        "focalcodec.pipeline.compress",
    ],
)
def test_importing_the_core_loads_no_outer_layer(module: str) -> None:
    """The same rule at run time: what importing a module actually pulls in."""
    code = (
        f"import sys, {module}\n"
        "print(' '.join(m for m in sys.modules if m.startswith('focalcodec.')))"
    )
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.split()
    outer = [m for m in loaded if layer(m) in FORBIDDEN[layer(module)]]
    assert not outer, outer
