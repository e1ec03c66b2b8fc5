"""Dependencies between the rooms point one way, as the README's Layout section draws them.

Read from the source (every `import`, at module level or inside a function), so a
rule is broken the moment someone writes the import, not when a test happens to run it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import framedrift.deploy
import framedrift.producers
import framedrift.schemas
import framedrift.worker

# Room -> the rooms its modules may import (a room's own modules always may).
ALLOWED = {
    "framedrift.worker": (),  # the package itself; a module added beside cli.py needs a room
    "framedrift.schemas": (),
    "framedrift.producers": ("framedrift.schemas",),
    "framedrift.worker.detection": (),
    "framedrift.worker.model": ("framedrift.worker.detection",),
    "framedrift.worker.ops": ("framedrift.worker.detection.parameters",),
    "framedrift.worker.stream": (
        "framedrift.schemas",
        "framedrift.worker.detection",
        "framedrift.worker.model",
        "framedrift.worker.ops",
    ),
    "framedrift.worker.evaluation": (
        "framedrift.producers",
        "framedrift.worker.detection",
        "framedrift.worker.model",
        "framedrift.worker.ops",
        "framedrift.worker.usage",
    ),
    "framedrift.worker.usage": (),
    # The command line sits on top and may use every room (inside its subcommands).
    "framedrift.worker.cli": ("framedrift",),
    "framedrift.deploy": (
        "framedrift.producers",
        "framedrift.schemas",
        "framedrift.worker.model",
        "framedrift.worker.ops",
        "framedrift.worker.stream",
    ),
}
PACKAGES = (framedrift.schemas, framedrift.producers, framedrift.worker, framedrift.deploy)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        root = Path(package.__file__).parent
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package.__name__, *parts))] = path
    return found


def room_of(module: str) -> str:
    rooms = [room for room in ALLOWED if module == room or module.startswith(room + ".")]
    assert rooms, f"{module} is in no room: add it to ALLOWED and to the README's Layout"
    return max(rooms, key=len)


def project_imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in imported if name.startswith("framedrift.")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


MODULES = modules()


def test_every_room_has_modules() -> None:
    for room in ALLOWED:
        assert any(room_of(module) == room for module in MODULES), room


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_within_the_rooms_allowed(module: str) -> None:
    room = room_of(module)
    allowed = (room, *ALLOWED[room])
    # `from framedrift.worker.ops import metrics` names both the package and the module.
    forbidden = {
        name
        for name in project_imports(MODULES[module])
        if not within(name, allowed) and not any(within(a, (name,)) for a in allowed)
    }
    assert not forbidden, f"{module} ({room}) imports {sorted(forbidden)}"
