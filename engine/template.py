"""Rendering one message per recipient from the columns of its CSV row.

The syntax is ``{column}``; ``{{`` and ``}}`` stand for literal braces. A template is
compiled once, then bound to the CSV header, which turns every placeholder into a column
index: rendering a row is then one ``%`` of a tuple, with no parsing and no dict per row.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    literals: tuple[str, ...]
    fields: tuple[str, ...]
    pattern: str
    """The literals with ``%`` doubled and ``%s`` for each placeholder: a printf-style
    pattern, so that rendering is one C call (``%`` with a tuple costs half what
    ``str.format`` does, which parses its pattern on every call)."""

    def join(self, values: Sequence[str]) -> str:
        """The message with *values*, one per placeholder in order, in their places."""
        return self.pattern % tuple(values)

    @classmethod
    def compile(cls, source: str) -> Template:
        """Split *source* into literals and placeholders; ``ValueError`` names the problem."""
        literals: list[str] = []
        fields: list[str] = []
        buf: list[str] = []
        i, n = 0, len(source)
        while i < n:
            ch = source[i]
            if ch == "{":
                if source.startswith("{{", i):
                    buf.append("{")
                    i += 2
                    continue
                end = source.find("}", i + 1)
                if end < 0:
                    raise ValueError(f"unclosed '{{' at character {i + 1}")
                name = source[i + 1 : end].strip()
                if not name or "{" in name:
                    raise ValueError(f"empty or nested placeholder at character {i + 1}")
                literals.append("".join(buf))
                buf = []
                fields.append(name)
                i = end + 1
            elif ch == "}":
                if source.startswith("}}", i):
                    buf.append("}")
                    i += 2
                    continue
                raise ValueError(f"single '}}' at character {i + 1} (write '}}}}' for a brace)")
            else:
                buf.append(ch)
                i += 1
        literals.append("".join(buf))
        pattern = "%s".join(lit.replace("%", "%%") for lit in literals)
        return cls(source, tuple(literals), tuple(fields), pattern)

    def bind(self, header: Sequence[str], defaults: Mapping[str, str]) -> BoundTemplate:
        """Resolve placeholders to column indices; ``KeyError`` names a missing column."""
        index = {name: i for i, name in enumerate(header)}
        for name in self.fields:
            if name not in index:
                raise KeyError(name)
        columns = tuple(index[name] for name in self.fields)
        return BoundTemplate(
            template=self,
            defaults=tuple(defaults.get(name, "") for name in self.fields),
            cells=_cells(columns),
        )


def _cells(columns: tuple[int, ...]) -> Callable[[Sequence[str]], Sequence[str]]:
    """The cells at *columns* of a row, as a tuple; picklable, since a bound template goes
    to the planning processes."""
    if len(columns) > 1:
        return operator.itemgetter(*columns)
    return _OneCell(columns[0]) if columns else _no_cells


@dataclass(frozen=True, slots=True)
class _OneCell:
    column: int

    def __call__(self, row: Sequence[str]) -> tuple[str]:
        return (row[self.column],)


def _no_cells(row: Sequence[str]) -> tuple[()]:
    return ()


@dataclass(frozen=True, slots=True)
class BoundTemplate:
    """A template bound to a header. Rendering runs once per recipient, so the cells are
    fetched by one ``itemgetter`` and the text built by :meth:`Template.join`, both in C."""

    template: Template
    defaults: tuple[str, ...]
    """Per placeholder, the value of an empty cell; ``""``: none."""
    cells: Callable[[Sequence[str]], Sequence[str]]

    def values(self, row: Sequence[str]) -> tuple[str, ...] | str:
        """Each placeholder's value (the cell, else its default), or the name of the first
        column that is empty and has no default."""
        out = tuple(map(str.strip, self.cells(row)))
        if "" in out:
            filled = list(out)
            for k, value in enumerate(out):
                if not value:
                    filled[k] = self.defaults[k]
                    if not filled[k]:
                        return self.template.fields[k]
            return tuple(filled)
        return out

    def render(self, row: Sequence[str]) -> tuple[str, str | None]:
        """``(text, None)``, or ``("", column)`` when *column* is empty and has no default."""
        values = self.values(row)
        if isinstance(values, str):
            return "", values
        return self.template.join(values), None
