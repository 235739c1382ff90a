"""Layout promises: no import cycle inside ``kit``, no oversized module, a thin dashboard.

The import graph is read from the source with :mod:`ast`, not by importing: every ``import`` and
``from ... import`` of a ``kit`` module counts, at module level and inside functions (a lazy import
is still a dependency, it only moves the failure to run time). Imports under ``if TYPE_CHECKING:``
are skipped: they never execute, so they cannot form a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "kit"
MAX_LINES = 500
# What a dashboard must not load: the engine runs in the desk service, the viewer only talks to it
# (kit.core.payoff and pricing are allowed: the risk graph computes payoffs in the viewer).
ENGINE = ("kit.engine", "kit.risk", "kit.store", "kit.portfolio", "kit.execution", "kit.adapters")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(KIT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can execute, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_pkg: bool) -> Iterator[str]:
    """Dotted names an import statement may load (a module, or a name inside one)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    yield base
    for alias in node.names:
        yield f"{base}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    """Module → the kit modules it imports (packages whose ``__init__`` runs on the way too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree):
            for target in _targets(node, name, path.name == "__init__.py"):
                while target and target not in modules:  # a name inside a module
                    target = target.rpartition(".")[0]
                if not target.startswith("kit"):
                    continue
                deps.add(target)
                parent = target.rpartition(".")[0]
                while parent and not name.startswith(parent + "."):  # its packages run first
                    deps.add(parent)
                    parent = parent.rpartition(".")[0]
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    code = (
        "from typing import TYPE_CHECKING\n"
        "import kit.core.clock\n"
        "if TYPE_CHECKING:\n    from kit.engine.desk import Desk\n"
        "def f():\n    from kit.core.model import Quote\n"
    )
    found = {t for n in _imports(ast.parse(code)) for t in _targets(n, "kit.x", False)}
    assert {"kit.core.clock", "kit.core.model"} <= found
    assert not any(t.startswith("kit.engine") for t in found)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_kit_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_no_module_is_oversized() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them along a seam): {big}"


def test_the_dashboard_loads_no_engine_module() -> None:
    code = (
        "import kit.ui, kit; from kit.remote.client import connect; import sys; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('kit.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "kit.ui.monitor" in out and "kit.remote.client" in out
    loaded = [m for m in out if m.startswith(ENGINE)]
    assert not loaded, f"the dashboard loads engine modules: {loaded}"


def test_the_declared_ports_are_what_the_adapters_implement() -> None:
    from kit.adapters.base import Feed
    from kit.adapters.cpapi.broker import CpApiBroker
    from kit.adapters.paper.broker import PaperBroker
    from kit.adapters.replay.feed import ReplayFeed
    from kit.adapters.sim.feed import SimFeed
    from kit.adapters.thetadata.feed import ThetaDataFeed
    from kit.engine.ports import OrderFlow
    from kit.execution.broker import SimulatedVenue
    from kit.execution.manager import OrderManager

    assert issubclass(OrderManager, OrderFlow)
    assert issubclass(PaperBroker, SimulatedVenue)
    assert not issubclass(CpApiBroker, SimulatedVenue)  # a real venue matches on its own
    methods = [m for m in dir(Feed) if not m.startswith("_") and callable(getattr(Feed, m))]
    assert "get_nowait" in methods
    for feed in (SimFeed, ReplayFeed, ThetaDataFeed):
        assert all(callable(getattr(feed, m, None)) for m in methods), feed
