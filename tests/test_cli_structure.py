"""The CLI's modules import no circle (subcommands are plain click commands that `main`
adds), and mistakes about local state are one line and exit code 2, like any bad input."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

CLI = Path(__file__).parents[1] / "photogen_pipelines" / "cli"
PHOTOGEN = Path(sys.executable).with_name("photogen")


def _cli_imports(path: Path) -> set[str]:
    """The CLI modules `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "photogen_pipelines.cli":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("photogen_pipelines.cli."):
            found.add(node.module.rsplit(".", 1)[1])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module) :] + [module]
        if module in done:
            return None
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            if cycle := visit(imported):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return None


def test_the_cli_modules_import_no_circle():
    graph = {path.stem: _cli_imports(path) for path in CLI.glob("*.py")}
    assert len(graph) >= 10
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # every subcommand module is imported by main, and none imports main
    assert {"demo", "serve", "ui", "admin", "report", "dev"} <= graph["main"]
    assert [m for m, imports in graph.items() if "main" in imports] == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


UNUSABLE = "/proc/photogen-nope"  # /proc takes no new folders, even for root


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["demo", "--home", UNUSABLE], f"--home {UNUSABLE} cannot hold PhotoGen's local state"),
        (["demo", "--out", UNUSABLE], f"--out {UNUSABLE} cannot be written"),
        (["api-key", "create", "--name", "shop", "--home", UNUSABLE], f"--home {UNUSABLE} cannot hold"),
        (["db", "upgrade", "--home", UNUSABLE], f"--home {UNUSABLE} cannot hold"),
        (["serve", "--home", UNUSABLE, "--api-port", "{port}", "--ui-port", "{port2}"], f"--home {UNUSABLE} cannot hold"),
        (["ui", "--home", UNUSABLE, "--port", "{port}"], f"--home {UNUSABLE} cannot hold"),
    ],
)
def test_a_home_or_output_folder_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, args, says):
    args = [a.format(port=free_port(), port2=free_port()) for a in args]
    env = {"PATH": "/usr/bin:/bin", "PHOTOGEN_HOME": str(tmp_path / "home")}
    result = subprocess.run([str(PHOTOGEN), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("photogen: error: ") and says in lines[0], result.stderr
    assert result.stdout == ""
