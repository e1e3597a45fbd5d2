"""The shape of the code: one owner per concept, checked on the source itself.

- no import cycles between modules (imports at module level, as Python runs them);
- the catalog's file names are spelled in catalog/layout.py alone;
- files are written through seco_data.outputs alone (durable atomic writes), and worker pools live
  in seco_data.jobs alone;
- no print() in library code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"seco_data": ROOT / "seco_data", "seco_train": ROOT / "seco_train", "seco_cli": ROOT / "cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _top_level_imports(name: str, path: Path) -> set[str]:
    """Modules of ours that ``name`` imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text("utf-8"))
    found = set()
    body = list(tree.body)
    for node in body:
        if isinstance(node, (ast.If, ast.Try)):  # TYPE_CHECKING blocks and import fallbacks
            body.extend(node.body)
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_import_cycles():
    graph = {name: _top_level_imports(name, path) for name, path in MODULES.items()}
    # a package imports its parents' __init__ too: importing a.b.c runs a and a.b first
    for name in list(graph):
        parts = name.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if parent in MODULES and parent != name:
                graph[name].add(parent)
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodule
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif state.get(nxt) is None:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if state.get(name) is None:
            visit(name, [name])
    assert not cycles, cycles[:5]


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_catalog_file_names_are_spelled_in_one_module():
    names = ("catalog.json", "collection.json", "items.parquet", "ledger.sqlite", "recipe.yaml")
    layout = MODULES["seco_data.catalog.layout"]
    where = [f"{path.relative_to(ROOT)}:{line}: {value!r}" for name, path in MODULES.items() if path != layout
             for line, value in _string_constants(path) if re.sub(r"^(\.{0,2}/)+", "", value) in names]
    assert not where, where


def _calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            base = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            out.append((n.lineno, f"{base}.{name}" if base else name))
    return out


def test_files_are_written_through_outputs_and_pools_live_in_jobs():
    allowed = {"seco_data.outputs", "seco_data.jobs"}
    writes = {"os.replace", "os.rename", "write_text", "write_bytes", "ProcessPoolExecutor", "ThreadPoolExecutor",
              "get_context", "print"}
    found = []
    for name, path in MODULES.items():
        if name in allowed or name.startswith("seco_cli"):
            continue
        for line, call in _calls(path):
            if call in writes or call.split(".")[-1] in writes:
                found.append(f"{path.relative_to(ROOT)}:{line}: {call}")
    # renaming a finished location folder into place (imports, the SeCo layout) is a folder move
    # of files already written durably through outputs
    folder_moves = {"seco_data/importers/convert.py", "seco_data/export/seco_layout/files.py"}
    found = [f for f in found if not (f.split(":")[0] in folder_moves and f.endswith("os.rename"))]
    assert not found, found
