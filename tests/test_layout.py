"""The core's rooms and the direction of their imports (docs/architecture.md §2).

The core never imports Dagster, FastAPI or the outer packages. Inside it, each domain
package sits on a floor, and a module imports only from its own package or from a lower
floor: never sideways into a sibling domain, never upward, and no module joins a cycle.
"""

import ast
from pathlib import Path

CORE = Path(__file__).parents[1] / "photogen_pipelines"
ENTRY_POINTS = {CORE / "definitions.py", CORE / "cli", CORE / "devtools"}
FORBIDDEN = {"dagster", "fastapi", "assets", "resources", "sensors", "storefront_api"}

# floor -> the core's top-level packages and ground modules on it, lowest first
FLOORS = [
    {"errors", "settings", "clock"},  # ground: imports nothing of ours
    {"db", "imaging", "catalog", "storage", "http", "run_tags", "logs"},  # logs: structured, with no personal data
    {"access", "engines"},
    {"factories"},  # engines and stores from settings
    {"tiers"},  # which engines a quality tier gets
    {"generation", "licences"},  # the stages; which models a configuration loads (needs tiers)
    {"orders", "credits", "jobs"},  # the order; customers and their credit wallets; the studio's jobs
    {"payments", "fulfilment", "webhooks", "analytics"},
    {"workflows"},  # placing, approving, retiring an order: ties the domains together
    {"devtools"},  # tiny random-weight models for tests and the dev commands
    {"definitions"},  # entry points: the Definitions, then the CLI that serves them
    {"cli"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py") if "migrations" not in p.parts}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _core_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The core modules `name` imports (a `from package import module` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_core_modules_import_no_dagster_fastapi_or_outer_layers():
    core_files = [p for p in CORE.rglob("*.py") if not any(p == e or e in p.parents for e in ENTRY_POINTS)]
    assert len(core_files) >= 8
    offenders = {str(p.relative_to(CORE)): sorted(_imported_roots(p) & FORBIDDEN) for p in core_files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_room_of_the_core_has_a_floor():
    rooms = {_room(m) for m in _core_modules() if m != "photogen_pipelines"}
    assert rooms - FLOOR.keys() == set(), "a new package or top-level module: give it a floor in FLOORS"


def test_the_core_has_few_modules_at_its_top():
    top = sorted(p.name for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top


def test_imports_run_downhill_between_rooms():
    modules = _core_modules()
    climbing = []
    for name, path in modules.items():
        if name == "photogen_pipelines":
            continue
        for target in _core_imports(name, path, modules):
            if target == "photogen_pipelines":
                continue
            source_room, target_room = _room(name), _room(target)
            if source_room != target_room and FLOOR[target_room] >= FLOOR[source_room]:
                climbing.append(f"{name} -> {target}")
    assert climbing == []


def test_no_module_of_the_core_joins_an_import_cycle():
    modules = _core_modules()
    graph = {name: _core_imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ re-exporting its modules is no cycle of behaviour; leave the inits out
    inits = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = {n: {t for t in ts if t not in inits} for n, ts in graph.items() if n not in inits}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
