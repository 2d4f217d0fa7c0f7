"""One exception hierarchy for the whole engine.

::

    DispatchError                 exit 1 unless a subclass says otherwise
    ├── ConfigError               exit 2: config.toml is wrong; nothing was sent
    │   └── CampaignError         exit 2: the campaign file or its CSV header is wrong
    ├── StoreError                the SQLite store is unusable or from another campaign
    │   └── LeaseLost             exit 3: another worker took this one's messages over
    ├── OutputError               an output file cannot be written (exit 2 if it cannot
    │                             even be opened: nothing was written)
    ├── ProviderError             a provider adapter could not do what was asked
    └── SandboxError              the built-in simulator could not start or serve

Context lives in keyword-only fields; the message is built from them so that every error
names the file, the key or line, and what is wrong. Secrets never go into an error: callers
pass values through :func:`redact` when a value might be one.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_BROKEN_PIPE = 141
"""Standard output closed by its reader (``| head``): 128 + SIGPIPE, as ``cat`` exits."""


class DispatchError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DispatchError):
    """A config file is wrong: names the file, the key (dotted) and what is wrong."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self, problem: str, *, file: Path | str | None = None, key: str | None = None
    ) -> None:
        self.file = Path(file) if file is not None else None
        self.key = key
        self.problem = problem
        where = ": ".join(
            part for part in (str(self.file) if self.file else None, key) if part
        )
        super().__init__(f"{where}: {problem}" if where else problem)


class CampaignError(ConfigError):
    """A campaign file (or the header of its recipients CSV) is wrong."""


class StoreError(DispatchError):
    """The store cannot be opened or does not hold what the caller expects."""

    def __init__(self, problem: str, *, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class LeaseLost(StoreError):
    """This worker's lease lapsed (it was stopped or cut off for longer than the lease) and
    another worker rescued what it held; it stops, and what it sent is settled by the other
    as any interrupted message is."""

    exit_code = EXIT_STOPPED


class OutputError(DispatchError):
    """An output file (``report --csv FILE``) cannot be opened or written: names the path
    and the operating system's reason. Exit 2 when it cannot be opened (a bad path: nothing
    was written), 1 when writing failed part way (the file may be incomplete)."""

    def __init__(self, problem: str, *, path: Path | str, opened: bool) -> None:
        self.path = Path(path)
        self.problem = problem
        self.exit_code = EXIT_ERROR if opened else EXIT_BAD_INPUT
        super().__init__(f"{self.path}: {problem}")


class ProviderError(DispatchError):
    """A provider adapter failed in a way the dispatcher must hear about."""

    def __init__(self, problem: str, *, provider: str) -> None:
        self.provider = provider
        self.problem = problem
        super().__init__(f"provider {provider}: {problem}")


class SandboxError(DispatchError):
    """The sandbox could not start (port taken, bad fault spec) or serve."""


def redact(text: str, secrets: list[str] | tuple[str, ...] | set[str]) -> str:
    """Replace every occurrence of each non-trivial secret in *text* with ``***``."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
