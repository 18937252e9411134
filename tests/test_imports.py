"""The package's import graph: no cycles, and no import of the package's own modules inside a function.

Read from the source with `ast` (nothing is imported). An edge A -> B means that importing A imports
B at module level, counting the sub-package `__init__` that `from ..data.lm import x` runs first.
Imports inside functions are allowed only for optional dependencies (never for the package itself).
"""

import ast
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "hf_scratchgpt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement in `module` loads (sub-package __init__s included)."""
    is_pkg = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names: list[str] = []
    else:
        if node.level:
            anchor = module.split(".") if is_pkg else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        bases, names = [base], [alias.name for alias in node.names]
    found = []
    for base in bases:
        if not base.startswith("hf_scratchgpt"):
            continue
        parts = base.split(".")
        for i in range(2, len(parts) + 1):  # every package on the way, but the importer's own ancestors
            prefix = ".".join(parts[:i])  # (already being imported when the importer runs)
            if prefix in MODULES and not module.startswith(prefix + "."):
                found.append(prefix)
        found += [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    nested: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module].update(t for t in _resolve(module, node) if t != module)
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and _resolve(module, node):
                        nested.append(f"{module}.{func.name} (line {node.lineno})")
    return edges, nested


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_graph_is_read_correctly():
    edges, _ = _graph()
    assert "hf_scratchgpt.model.modeling_scratchgpt" in edges["hf_scratchgpt.model"]
    assert {"hf_scratchgpt.model", "hf_scratchgpt.model.configuration_scratchgpt"} & edges["hf_scratchgpt.convert"]
    assert "hf_scratchgpt.training.run" in edges["hf_scratchgpt.training.pretrain"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    cycles = _cycles(_graph()[0])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_package_imports_inside_functions():
    _, nested = _graph()
    assert not nested, f"imports of hf_scratchgpt modules inside functions: {nested}"


def test_the_remote_code_imports_only_torch_transformers_and_siblings():
    for path in (PACKAGE / "model").glob("*_scratchgpt.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module and "." not in node.module, (path.name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for name in names:
                    top = name.split(".")[0]
                    assert top in ("torch", "transformers") or top in sys.stdlib_module_names, (path.name, name)
