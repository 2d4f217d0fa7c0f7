"""The store's boundary: outside engine/store/, the engine names the store's protocols and
records, not the SQLite backend's modules; only the composition points build its classes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from engine.store.protocols import CampaignReads, DeliveryLedger
from engine.store.sqlite.campaign_reads import SqliteCampaignReads
from engine.store.sqlite.delivery_store import DeliveryStore

ENGINE = Path(__file__).resolve().parent.parent / "engine"
BACKEND = "engine.store.sqlite"
COMPOSITION_POINTS = {ENGINE / "run.py", *(ENGINE / "commands").glob("*.py")}
"""Where the SQLite classes are built and handed on, typed as the protocols."""
NOT_YET_BEHIND_A_PROTOCOL: dict[Path, set[str]] = {}
"""Imports of the backend that remain outside engine/store/, each name by name, so that a
new one fails this test until it is either behind a protocol or listed here with why (none
is left)."""


def _backend_imports(path: Path) -> set[str]:
    """``module.name`` (relative to engine.store.sqlite) of every import of the backend in
    *path*, at any depth (imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == BACKEND or node.module.startswith(BACKEND + ".")):
            module = node.module.removeprefix(BACKEND).lstrip(".")
            found |= {f"{module}.{a.name}".lstrip(".") for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix(BACKEND).lstrip(".") or a.name for a in node.names
                      if a.name == BACKEND or a.name.startswith(BACKEND + ".")}
    return found


def test_only_the_store_and_the_composition_points_import_the_sqlite_backend() -> None:
    """No module of engine/ outside engine/store/, cli.py and run.py imports from
    engine.store.sqlite, but for the imports listed (by name) with their reason."""
    offenders: dict[str, set[str]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        if path.relative_to(ENGINE).parts[0] == "store" or path in COMPOSITION_POINTS:
            continue
        extra = _backend_imports(path) - NOT_YET_BEHIND_A_PROTOCOL.get(path, set())
        if extra:
            offenders[str(path.relative_to(ENGINE.parent))] = extra
    assert offenders == {}


def test_the_listed_exceptions_are_still_needed() -> None:
    """Every listed exception is still imported where it is listed: the list only shrinks."""
    stale = {str(p.relative_to(ENGINE.parent)): names - _backend_imports(p)
             for p, names in NOT_YET_BEHIND_A_PROTOCOL.items() if names - _backend_imports(p)}
    assert stale == {}


def test_delivery_and_report_callers_name_only_the_protocols() -> None:
    """engine/delivery/, engine/html_report/ and engine/report.py import nothing of the
    backend at all: they take a DeliveryLedger or CampaignReads."""
    paths = [*sorted((ENGINE / "delivery").glob("*.py")),
             *sorted((ENGINE / "html_report").glob("*.py")), ENGINE / "report.py"]
    assert {str(p.relative_to(ENGINE.parent)): _backend_imports(p) for p in paths
            if _backend_imports(p)} == {}


@pytest.mark.parametrize(("protocol", "backend"), [(DeliveryLedger, DeliveryStore),
                                                   (CampaignReads, SqliteCampaignReads)])
def test_the_sqlite_classes_have_every_protocol_method(protocol: type, backend: type) -> None:
    """Each method of the protocol is on the SQLite class, with the same parameters."""
    methods = [n for n, v in vars(protocol).items()
               if not n.startswith("_") and inspect.isfunction(v)]
    assert methods
    for name in methods:
        want = list(inspect.signature(getattr(protocol, name)).parameters)
        assert list(inspect.signature(getattr(backend, name)).parameters) == want, name
