"""The core stays free of orchestration and web frameworks (docs/architecture.md §2)."""

import ast
from pathlib import Path

CORE = Path(__file__).parents[1] / "photogen_pipelines"
ENTRY_POINTS = {CORE / "definitions.py", CORE / "cli"}
FORBIDDEN = {"dagster", "fastapi", "assets", "resources", "sensors", "storefront_api"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_no_dagster_fastapi_or_outer_layers():
    core_files = [p for p in CORE.rglob("*.py") if not any(p == e or e in p.parents for e in ENTRY_POINTS)]
    assert len(core_files) >= 8
    offenders = {str(p.relative_to(CORE)): sorted(_imported_roots(p) & FORBIDDEN) for p in core_files}
    assert {k: v for k, v in offenders.items() if v} == {}
