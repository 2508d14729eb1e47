"""The parts import one another in one direction only (docs/architecture.md draws the same graph)."""

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit

# Modules every part may use: the data model, the outbox's writes, the extensions, errors, identifiers, settings.
FOUNDATION = {"models", "extensions", "errors", "inputs", "config", "periods", "outbox"}
# Part -> the parts it may import. Entry points (api, demo, cli, live, workers) sit on top.
ALLOWED = {
    "api": {"scoring", "board", "workers", "security", "stores", "ops", "integrity", "analytics"},
    "demo": {"api", "scoring", "security", "ops"},
    "cli": {"scoring", "board", "security", "stores", "integrity", "analytics"},
    "live": {"board", "security", "stores", "ops"},
    "workers": {"board", "scoring", "stores", "ops", "integrity", "analytics"},
    # The admin console: a page and its static files; everything it does goes through the admin API.
    "console": {"security", "ops"},
    # The anomaly scan: reads the ledger, judges it, holds suspects through moderation.
    "integrity": {"scoring", "board", "stores", "ops"},
    # Figures of the ledger for the people who run the board, and the rollups the worker keeps for them.
    "analytics": {"stores", "ops"},
    "board": {"stores", "ops"},
    "scoring": {"ops"},
    "security": {"stores"},
    "ops": {"stores"},
    "stores": set(),
}


def part_of(module: str) -> str | None:
    """The part a dotted module name belongs to (None for third-party modules)."""
    head, _, rest = module.removesuffix(".__init__").removesuffix("__init__").partition(".")
    if head == "workers":
        return "workers"
    if head == "config":
        return "config"
    if head != "scoreboard":
        return None
    return rest.partition(".")[0] or "app"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to dotted names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def edges() -> set[tuple[str, str, str]]:
    """``(part, imported part, file)`` for every import between parts."""
    result = set()
    for path in [*ROOT.joinpath("scoreboard").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]:
        source = part_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in filter(None, map(part_of, imports_of(path))):
            if target != source:
                result.add((source, target, str(path.relative_to(ROOT))))
    return result


def test_every_import_between_parts_is_allowed():
    wrong = sorted(
        (file, f"{source} -> {target}")
        for source, target, file in edges()
        if source != "app" and target not in FOUNDATION and target not in ALLOWED.get(source, set()) and target != "app"
    )
    assert wrong == []


def test_no_part_imports_the_app_factory():
    assert sorted(file for source, target, file in edges() if target == "app" and source != "app") == []


def test_foundation_modules_import_no_part():
    wrong = sorted((file, target) for source, target, file in edges() if source in FOUNDATION and target in ALLOWED)
    assert wrong == []


def test_the_allowed_graph_has_no_cycle():
    seen, stack = set(), set()

    def visit(part):
        assert part not in stack, f"cycle through {part}"
        if part in seen:
            return
        stack.add(part)
        for target in ALLOWED[part]:
            visit(target)
        stack.discard(part)
        seen.add(part)

    for part in ALLOWED:
        visit(part)
