"""docs/architecture.md stays true: its module map, lifecycle diagram, engine table and floors
are checked against the code they describe."""

import re
import typing
from pathlib import Path

from photogen_pipelines import factories
from photogen_pipelines.orders.states import TRANSITIONS
from tests.test_layout import FLOORS

REPO = Path(__file__).parents[1]
DOC = (REPO / "docs" / "architecture.md").read_text()
PRODUCTION = ["photogen_pipelines", "assets", "sensors", "resources", "storefront_api", "engine_service"]


def _production_modules() -> set[str]:
    found = set()
    for package in PRODUCTION:
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            if "/migrations/versions/" not in relative:  # Alembic's revisions: data, not modules
                found.add(relative)
    return found


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


def test_every_production_module_is_named_in_the_map():
    named = set(re.findall(r"`((?:{})/[\w/]+\.py)`".format("|".join(PRODUCTION)), _section("## 7.")))
    assert sorted(_production_modules() - named) == [], "name the new module in docs/architecture.md §7"
    assert sorted(named - _production_modules()) == [], "the map names a module that is gone"


def test_the_lifecycle_diagram_is_the_state_machine():
    diagram = _section("## 4.").split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+)\s*$", diagram, re.M))
    table = {(str(state), str(target)) for state, targets in TRANSITIONS.items() for target in targets}
    assert drawn == table


def test_the_engine_table_is_the_factories_list_of_backends():
    rows = re.findall(r"^\| `(\w+)` \| `([\w-]+)` \| `(engines/\w+\.py)` \|", _section("## 3."), re.M)
    interfaces = {
        "FaceAnalyzer": factories.FaceBackend,
        "Stylizer": factories.StyleBackend,
        "Upscaler": factories.UpscaleBackend,
        "SafetyDetector": factories.SafetyBackend,
        "Animator": factories.VideoBackend,
    }
    drawn = {(interface, backend) for interface, backend, _ in rows}
    registry = {(interface, backend) for interface, kind in interfaces.items() for backend in typing.get_args(kind)}
    assert drawn == registry
    assert [module for *_, module in rows if not (REPO / "photogen_pipelines" / module).exists()] == []


def test_the_floors_table_is_the_layering_test():
    table = _section("## 2.").split("| floor | rooms |", 1)[1].split("\n\n", 1)[0]
    drawn = [set(re.findall(r"`(\w+)`", row.split("|")[2])) for row in table.splitlines()[2:] if row.startswith("|")]
    assert set().union(*drawn) == set().union(*FLOORS)
    assert drawn[:-1] == FLOORS[: len(drawn) - 1]
