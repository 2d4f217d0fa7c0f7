"""The SQLite backend's SQL: every named statement parses against the schema, names are
unique, and only engine/store/sqlite/ speaks to SQLite."""

from __future__ import annotations

import re
import sqlite3
import string
from importlib import resources
from pathlib import Path

import pytest

from engine.store.sqlite.sql import (
    QUERIES,
    QUERIES_REGEX,
    QUERY_FILES,
    parse_query_file,
    statements,
)

ENGINE = Path(__file__).resolve().parent.parent / "engine"
SAMPLES = {
    "states": "?, ?", "columns": "line, phone", "rest": "FROM messages",
    "rows": "(?, ?, ?, ?)", "fields": "json_extract(value, '$[0]')",
    "text_field": "json_extract(value, '$[1]')", "assignments": "state = ?, reason = ?",
    "limit": "10", "unknown_delivery": "unknown_delivery", "held_by": "worker = ?",
    "lines": "", "only": "", "awaiting": "state = 'accepted'", "failed": "state = 'failed'",
    "where": "state = ?",
    "unapplied": "(SELECT provider, provider_message_id, state, provider_status, reason, at, "
                 "received_at FROM delivery_reports)",
}
"""A stand-in for each ``{placeholder}`` a statement has, filled in Python at import."""
SAMPLE_COLUMNS = {"insert_planned": "line, phone", "insert_not_sent": "line, phone, state",
                  "insert_planned_json": "line, phone", "insert_not_sent_json": "line"}
"""The column lists that match the samples' ``rows`` and ``fields``."""


def filled(name: str) -> str:
    """Statement *name* with every placeholder filled by its sample."""
    text = QUERIES[name]
    names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
    values = {field: SAMPLES[field] for field in names}
    if "columns" in values and name in SAMPLE_COLUMNS:
        values["columns"] = SAMPLE_COLUMNS[name]
    return text.format(**values) if values else text


def runnable(name: str) -> list[str]:
    """What EXPLAIN is run on for *name*: a fragment inside a statement, a script split."""
    text = filled(name)
    if name.endswith("_columns"):
        return [f"SELECT {text} FROM messages"]
    if name.endswith("_condition"):
        return [f"SELECT 1 FROM messages WHERE {text}"]
    if name.endswith("_from"):
        return [f"SELECT 1 {text}"]
    if name == "unapplied":
        return [f"SELECT 1 FROM {text}"]
    return [s for s in text.split(";") if s.strip()]


@pytest.fixture
def schema_db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.executescript(QUERIES["schema"])
    return conn


def test_every_named_query_parses_against_the_schema(schema_db: sqlite3.Connection) -> None:
    """Each statement of queries.sql (fragments inside one, templates with stand-ins) is
    prepared by SQLite against a freshly created schema, with NULL parameters."""
    checked = 0
    for name in QUERIES:
        if name == "schema" or name.startswith("upgrade_from_"):
            continue
        # EXPLAIN of a PRAGMA applies it (temp_store drops temporary tables): made anew.
        schema_db.execute("DROP TABLE IF EXISTS temp.maybe_duplicates")
        if name != "create_maybe_duplicates":
            schema_db.execute(QUERIES["create_maybe_duplicates"])
        for sql in runnable(name):
            try:
                schema_db.execute(f"EXPLAIN {sql}", [None] * sql.count("?")).fetchall()
            except sqlite3.Error as exc:
                pytest.fail(f"{name}: {exc}: {sql}")
            checked += 1
    assert checked > 60


def test_every_upgrade_parses_against_a_database_without_what_it_adds(tmp_path: Path) -> None:
    """Each statement of an upgrade prepares on tables that lack the columns it adds."""
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript("CREATE TABLE messages (campaign_id, line); CREATE TABLE campaigns (id);")
    upgrades = [n for n in QUERIES if n.startswith("upgrade_from_")]
    assert len(upgrades) == 7
    for name in upgrades:
        for sql in statements(name):
            conn.execute(f"EXPLAIN {sql}").fetchall()
        if name == "upgrade_from_6":  # the table upgrade_from_7 adds to
            conn.executescript(QUERIES[name])


def test_query_names_are_unique_across_the_files() -> None:
    """No name is given twice, in one .sql file or across them; parsing says so."""
    seen: list[str] = []
    for file in QUERY_FILES:
        text = (resources.files("engine.store.sqlite") / file).read_text(encoding="utf-8")
        seen += QUERIES_REGEX.findall(text)
    assert len(seen) == len(set(seen)) == len(QUERIES)
    with pytest.raises(ValueError, match="named twice"):
        parse_query_file("-- a --\nSELECT 1;\n-- a --\nSELECT 2;\n")


def test_only_the_sqlite_backend_imports_sqlite() -> None:
    """No module of engine/ outside engine/store/sqlite/ imports sqlite3 or aiosqlite."""
    allowed = {
        # The sandbox's own state file (what the simulated providers billed), not the
        # engine's store: the simulator stands in for the providers' databases.
        ENGINE / "sandbox" / "state.py",
    }
    pattern = re.compile(r"^\s*(?:import|from)\s+(?:sqlite3|aiosqlite)\b", re.MULTILINE)
    offenders = [str(path.relative_to(ENGINE.parent)) for path in sorted(ENGINE.rglob("*.py"))
                 if "store/sqlite" not in path.relative_to(ENGINE).as_posix()
                 and path not in allowed and pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
