"""The layering of docs/DESIGN.md §2, checked by walking every import in the tree.

Each module belongs to one floor; a module may import its own floor's family and the floors below,
never a floor above, and the component families (losses, miners, samplers, data, models) never
import each other. Docstrings that cite the design must cite a section that exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dml_core", "toy", "app")

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "ground",
        (
            "dml_core",
            "dml_core.registry",
            "dml_core.io",
            "dml_core.distances",
            "dml_core.random_draws",
            "dml_core.statistics",
            "dml_core.config",
            "dml_core.metrics",
        ),
    ),
    (
        "components",
        (
            "dml_core.losses",
            "dml_core.miners",
            "dml_core.samplers",
            "dml_core.data",
            "dml_core.models",
        ),
    ),
    ("methods", ("dml_core.methods", "dml_core.presets")),
    ("engine", ("dml_core.engine",)),
    (
        "interface",
        (
            "dml_core.interop",
            "dml_core.report",
            "dml_core.study",
            "dml_core.cli",
            "dml_core.__main__",
        ),
    ),
    ("toy", ("toy",)),
    ("app", ("app",)),
]
"""Floors from the bottom up (docs/DESIGN.md §2)."""

COMPONENT_FAMILIES = dict(FLOORS)["components"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def owner(module: str) -> tuple[int, str] | None:
    """(floor index, family prefix) of a project module; the longest matching prefix wins."""
    best: tuple[int, str] | None = None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (index, prefix)
    return best


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every project import in a file, function-level imports included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def project_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))


def test_the_floors_cover_every_module() -> None:
    unplaced = [module_name(p) for p in project_files() if owner(module_name(p)) is None]
    assert not unplaced, f"modules on no floor of docs/DESIGN.md §2: {unplaced}"


def test_imports_flow_downwards_only() -> None:
    violations = []
    for path in project_files():
        source = module_name(path)
        source_floor, source_family = owner(source)  # type: ignore[misc]
        for line, target in imported_modules(path):
            placed = owner(target)
            if placed is None:
                continue
            target_floor, target_family = placed
            if target_floor > source_floor:
                violations.append(
                    f"{path.relative_to(REPO_ROOT)}:{line} imports {target} (a floor up)"
                )
            elif (
                source_family in COMPONENT_FAMILIES
                and target_family in COMPONENT_FAMILIES
                and source_family != target_family
            ):
                violations.append(
                    f"{path.relative_to(REPO_ROOT)}:{line} imports {target} (another component)"
                )
    assert not violations, "\n".join(violations)


def test_no_import_cycles_between_modules() -> None:
    modules = {module_name(p): p for p in project_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imported_modules(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " → ".join(cycle))


CITATION = re.compile(r"DESIGN\.md\s*§\s*(\d+)")


def test_every_design_citation_names_an_existing_section() -> None:
    design = (REPO_ROOT / "docs" / "DESIGN.md").read_text()
    sections = set(re.findall(r"^## (\d+)\.", design, flags=re.MULTILINE))
    cited: list[str] = []
    for path in [
        *project_files(),
        *sorted((REPO_ROOT / "docs").glob("*.md")),
        REPO_ROOT / "README.md",
    ]:
        for number in CITATION.findall(path.read_text()):
            cited.append(number)
            assert number in sections, (
                f"{path.relative_to(REPO_ROOT)} cites docs/DESIGN.md §{number}"
            )
    assert cited, "no docstring cites docs/DESIGN.md"


def test_design_citations_point_inside_the_project() -> None:
    """Every mention of the design names the project's own file, docs/DESIGN.md."""
    stray = []
    for path in project_files():
        for match in re.finditer(r"(\S*)DESIGN\.md", path.read_text()):
            if not match.group(1).endswith("docs/"):
                stray.append(f"{path.relative_to(REPO_ROOT)}: {match.group(0)}")
    assert not stray, "\n".join(stray)
