"""Every SQL statement of the SQLite backend, by name: ``schema.sql`` (the schema and its
upgrades) and ``queries.sql`` (everything else), read once with :mod:`importlib.resources`,
in procrastinate's format (``procrastinate/sql/__init__.py``)::

    -- query_name --
    -- what it does (any number of comment lines, not part of the statement)
    SELECT ...;

A statement's trailing ``;`` is dropped. A name ending ``_columns`` is a column list and one
ending ``_condition`` a ``WHERE`` condition: fragments other statements are built from. A
``{name}`` in a statement is filled by :func:`query` from the caller's values: IN lists of
a length known only in Python, column lists from a record's fields. Build each statement
once, as a module constant: ``sqlite3`` caches prepared statements by their exact text.

The standard library only: the checkpoint writer's process imports this.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

QUERIES_REGEX: Final = re.compile(r"(?:\n|^)-- ([a-z0-9_]+) --\n(?:-- .+\n)*", re.MULTILINE)
QUERY_FILES: Final = ("schema.sql", "queries.sql")


def parse_query_file(text: str) -> dict[str, str]:
    """The named statements of *text*; a name given twice is an error."""
    parts = QUERIES_REGEX.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is named twice")
        queries[name] = body.strip().removesuffix(";").rstrip()
    return queries


def load_queries() -> dict[str, str]:
    """Every named statement of :data:`QUERY_FILES`; a name in two files is an error."""
    queries: dict[str, str] = {}
    for file in QUERY_FILES:
        text = (resources.files("engine.store.sqlite") / file).read_text(encoding="utf-8")
        for name, body in parse_query_file(text).items():
            if name in queries:
                raise ValueError(f"query {name!r} is in more than one of {QUERY_FILES}")
            queries[name] = body
    return queries


QUERIES: Final[dict[str, str]] = load_queries()


def query(name: str, **values: str) -> str:
    """The statement *name*, its ``{placeholders}`` filled from *values* (none: as written)."""
    text = QUERIES[name]
    return text.format(**values) if values else text


def statements(name: str) -> tuple[str, ...]:
    """The statements of the script *name*, one by one (none for an empty one). Split at
    ``;``: a script meant for this holds no ``;`` but between its statements."""
    return tuple(s.strip() for s in QUERIES[name].split(";") if s.strip())
