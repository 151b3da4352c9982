"""Which way Parley's imports run: settings at the bottom, and no import hidden in a function
without a reason written beside it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from parley import auth, lifespan, routing, throttling, uvicorn
from parley.backends import backends, get_backend
from parley.contrib import uvicorn as protocols
from parley.realtime import auth as tickets
from parley.realtime import lifespan as lifespans
from parley.realtime import routing as routes

PACKAGE = Path(__file__).resolve().parent.parent / "parley"


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def function_local_imports(path: Path) -> list[ast.stmt]:
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [
                node for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom)
            ]
    return found


def has_reason(lines: list[str], lineno: int) -> bool:
    """A comment above the import (or above the run of imports it belongs to)."""
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(("from ", "import ")):
        index -= 1
    return index >= 0 and lines[index].strip().startswith("#")


def test_conf_imports_nothing_of_parley():
    """The settings sit at the bottom: what is built from them resets itself."""
    modules = imported_modules(PACKAGE / "conf.py")
    assert modules and not [m for m in modules if m.startswith((".", "parley"))]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_every_function_local_import_says_why(path):
    lines = path.read_text().splitlines()
    unexplained = [
        f"{path.name}:{node.lineno}"
        for node in function_local_imports(path)
        if not has_reason(lines, node.lineno)
    ]
    assert not unexplained


def test_changing_the_settings_resets_the_backends_and_the_buckets(settings):
    first = get_backend()
    throttling.user_buckets.get(1, (5, 20))
    settings.PARLEY = {"STREAM_FLUSH_INTERVAL": 0.5}
    assert "default" not in backends._instances
    assert throttling.user_buckets._buckets == {}
    assert get_backend() is not first


def test_the_knowledge_registry_knows_nothing_of_the_signals():
    """Registering a model connects nothing: the receivers, connected once when the app is
    ready, look the model up (the cycle registry → signals → sources/store → registry is gone)."""
    modules = imported_modules(PACKAGE / "knowledge" / "registry.py")
    assert ".registry" not in modules and not [m for m in modules if "signals" in m]


def test_the_test_settings_stand_alone():
    """tests/settings.py imports nothing of the example project's settings; the tests about
    those load them explicitly."""
    path = Path(__file__).resolve().parent / "settings.py"
    assert not [m for m in imported_modules(path) if m.startswith("example")]


def parley_imports(path: Path) -> list[str]:
    """The Parley modules ``path`` imports, as absolute dotted names."""
    package = ["parley", *path.relative_to(PACKAGE).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("parley"):
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("parley")]
    return names


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The wire format knows no socket, no table and no framework.
        ("protocol", ("parley.realtime", "parley.rooms", "parley.answers", "parley.models")),
        # A backend knows no socket and stores nothing.
        ("backends", ("parley.realtime", "parley.rooms", "parley.answers", "parley.models")),
        # Retrieval knows no socket.
        ("knowledge", ("parley.realtime", "parley.answers")),
        # The metrics are counted by everything, and know nothing of Parley.
        ("metrics", ("parley",)),
        # Rooms, members and messages know no socket, and nothing of the answers.
        ("rooms", ("parley.realtime", "parley.answers")),
    ],
)
def test_imports_run_one_way(layer, forbidden):
    """STYLE.md's directions, checked: each layer imports nothing above it."""
    wrong = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in parley_imports(path)
        if name.startswith(forbidden)
    ]
    assert not wrong


def test_tables_know_no_services_and_pages_no_hub():
    above = ("parley.rooms", "parley.answers", "parley.realtime")
    assert not [m for m in parley_imports(PACKAGE / "models.py") if m.startswith(above)]
    assert not [m for m in parley_imports(PACKAGE / "views.py") if m.startswith(above[2] + ".hub")]


def test_the_public_paths_of_the_docs_still_import():
    """The paths docs/, README.md and example/ give users, kept by thin re-export modules."""
    assert routing.websocket_application is routes.websocket_application
    assert routing.websocket_urlpatterns is routes.websocket_urlpatterns
    assert lifespan.lifespan_application is lifespans.lifespan_application
    assert uvicorn.WebSocketProtocol is protocols.WebSocketProtocol
    assert uvicorn.HttpToolsProtocol is protocols.HttpToolsProtocol
    assert auth.ticket_issue is tickets.ticket_issue
