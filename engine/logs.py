"""structlog set-up: readable lines on a TTY, JSON lines otherwise, always to stderr.

On a terminal a line is ``HH:MM:SS level event key=value ...``, wrapped at the terminal's
width between words (never inside one), continuation lines indented. Lines go to whatever
``sys.stderr`` is when they are written, so that a live progress display that redirects
stderr prints them above itself instead of being torn by them.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import MutableMapping
from typing import Any, Final, Literal, TextIO

import structlog

LogFormat = Literal["auto", "console", "json"]

FALLBACK_COLUMNS: Final = 80
CONTINUATION_INDENT: Final = "    "
LEVEL_COLORS: Final = {"debug": "\x1b[2m", "info": "\x1b[32m", "warning": "\x1b[33m",
                       "error": "\x1b[31m", "critical": "\x1b[31;1m"}
RESET: Final = "\x1b[0m"


class _CurrentStderr:
    """A file that is whatever ``sys.stderr`` is at each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def terminal_columns(stream: TextIO | None = None) -> int:
    """The width to wrap at: ``$COLUMNS`` if set, else the terminal's, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size((stream or sys.__stderr__ or sys.stderr).fileno()).columns
    except (OSError, ValueError, AttributeError):
        return FALLBACK_COLUMNS


class WrappingConsoleRenderer:
    """``HH:MM:SS level event key=value ...`` wrapped at *columns* (or the terminal's width,
    read at each line) between words, never inside one."""

    def __init__(self, *, colors: bool, columns: int | None = None) -> None:
        self.colors = colors
        self.columns = columns

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
        stamp = str(event.pop("timestamp", ""))
        level = str(event.pop("level", ""))
        name = str(event.pop("event", ""))
        error = event.pop("exception", None)
        pairs = [f"{k}={_value(v)}" for k, v in sorted(event.items())]
        head = " ".join(part for part in (stamp, f"{level:<7}", name) if part)
        width = max(self.columns or terminal_columns(), 20)
        lines = textwrap.wrap(" ".join([head, *pairs]), width=width,
                              subsequent_indent=CONTINUATION_INDENT, break_long_words=False,
                              break_on_hyphens=False) or [head]
        if self.colors and level in LEVEL_COLORS:
            lines[0] = lines[0].replace(f"{level:<7}", f"{LEVEL_COLORS[level]}{level:<7}{RESET}",
                                        1)
        text = "\n".join(lines)
        return f"{text}\n{error}" if error else text


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


def configure_logging(fmt: LogFormat = "auto", *, level: int = logging.INFO) -> None:
    tty = sys.stderr.isatty()
    use_json = fmt == "json" or (fmt == "auto" and not tty)
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if use_json:
        processors += [structlog.processors.TimeStamper(fmt="iso", utc=True),
                       structlog.processors.format_exc_info,
                       structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
                       structlog.processors.format_exc_info,
                       WrappingConsoleRenderer(colors=tty)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
