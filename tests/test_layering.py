"""The floor plan holds: no import circle among our modules, and each layer imports only those below.

    events  ←  store  ←  engine  ←  cli

An `ast` walk over the sources (imports inside functions and under TYPE_CHECKING count too: a
dependency is a dependency, however late it is resolved). A failure names the offending imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("events", "store", "engine", "cli")  # each may import itself and those before it


def modules() -> dict[str, Path]:
    """stepledger module name -> source file, for every module of the four layers."""
    found = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["stepledger", *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that module `name` imports."""
    out: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_no_import_circles() -> None:
    edges = graph()
    found = circles(edges)
    detail = [
        "; ".join(f"{a} imports {b}" for a in group for b in sorted(edges[a]) if b in group)
        for group in found
    ]
    assert not found, "import circles:\n" + "\n".join(detail)


def test_each_layer_imports_only_the_layers_below() -> None:
    wrong = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


# What the command line may use of the layers below: the application API, and what it renders.
CLI_MAY_IMPORT = {
    "stepledger.engine.api",
    "stepledger.engine.read.describe",  # events described in words
    "stepledger.engine.read.terminal_text",  # text made safe for a terminal
    "stepledger.engine.read.measured",  # the measured times a run reports
}


def test_the_cli_uses_only_the_api_and_rendering_helpers() -> None:
    wrong = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        if layer_of(a) == LAYERS.index("cli")
        for b in sorted(targets)
        if (layer_of(b) == LAYERS.index("engine") and b not in CLI_MAY_IMPORT)
        or layer_of(b) == LAYERS.index("store")
    ]
    assert not wrong, "the CLI reaches past the API:\n" + "\n".join(wrong)


# What the engine may use of the store: its ports (the role interfaces and their errors), and its
# entry points — opening a store from a URL, and the schema's migrations.
ENGINE_MAY_IMPORT = {
    "stepledger.store",
    "stepledger.store.port",
    "stepledger.store.errors",
    "stepledger.store.connect",
    "stepledger.store.migrate",
    "stepledger.store.outages",  # riding out a database that is briefly away
}


def test_the_engine_uses_only_the_store_s_ports() -> None:
    wrong = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        if layer_of(a) == LAYERS.index("engine")
        for b in sorted(targets)
        if layer_of(b) == LAYERS.index("store") and b not in ENGINE_MAY_IMPORT
    ]
    assert not wrong, "the engine reaches behind the store's ports:\n" + "\n".join(wrong)


def test_the_walk_sees_circles_and_layer_breaches() -> None:
    # The checker itself: a planted circle and a planted breach are found.
    planted = {"stepledger.engine.a": {"stepledger.engine.b"}, "stepledger.engine.b": {"stepledger.engine.a"}}
    assert circles(planted) == [["stepledger.engine.a", "stepledger.engine.b"]]
    assert layer_of("stepledger.cli.app") > layer_of("stepledger.engine.run.reactor")
    assert "stepledger.engine.run.reactor" in graph()["stepledger.engine.session.runs"]
