"""The sandbox's memory across processes: one SQLite file (``SandboxSettings.state_path``).

Every ``dispatch`` command that talks to the built-in sandbox starts its own, in its own
process: ``dispatch run`` bills messages, a later ``dispatch dlr`` asks about them. With a
state file (``dispatch.db`` -> ``dispatch.sandbox.db``, :func:`state_path_for`) a starting
sandbox loads what earlier ones billed in the last :data:`KEEP_S` (each message with its fate
and the time it becomes final, so later answers agree with earlier ones), continues the id
counter past every id handed out (a block of :data:`ID_BLOCK` ids reserved per process, so
two processes at once never hand out the same id), Sky Telecom's wallet, and the delivery
reports not yet posted, which it posts to the account's callback URL *now* (a provider
retries an unacknowledged webhook; the receiver the earlier process posted to is gone).

Writes are behind the answers: billed messages, wallet spending and posted reports are kept
in memory and written by one task every :data:`FLUSH_INTERVAL_S`, in one transaction in a
worker thread, so a send never waits for the disk. A sandbox killed loses at most that
interval of state; a stopped one writes everything before it returns. Two processes may use
one file at once (WAL, busy timeout); the wallet is written as spending, not as a balance.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Final, NamedTuple

import anyio
import structlog

from engine.errors import ConfigError
from engine.sandbox.messages import SentMessage, id_start

log = structlog.get_logger("engine.sandbox")

FLUSH_INTERVAL_S: Final = 0.2
KEEP_S: Final = 72 * 3600.0
"""Messages older than this are neither loaded nor kept: the engine gives up asking then."""
ID_BLOCK: Final = 10_000_000
BUSY_TIMEOUT_MS: Final = 10_000
WAL_SWITCH_TRIES: Final = 100
WAL_SWITCH_WAIT_S: Final = 0.05
WALLET_KINDS: Final = frozenset({"skytelecom"})

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    kind TEXT NOT NULL, id TEXT NOT NULL, recipient TEXT NOT NULL, text TEXT NOT NULL,
    sender TEXT, segments INTEGER NOT NULL, cost TEXT NOT NULL, currency TEXT NOT NULL,
    created REAL NOT NULL, final_at REAL NOT NULL, delivered INTEGER NOT NULL,
    callback_url TEXT, channel TEXT NOT NULL, task_id INTEGER, country TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS messages_created ON messages (created);
CREATE TABLE IF NOT EXISTS replays (
    kind TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS: Final = ("kind, id, recipient, text, sender, segments, cost, currency, created, "
                   "final_at, delivered, callback_url, channel, task_id, country")
_INSERT: Final = (f"INSERT OR IGNORE INTO messages ({_COLUMNS}) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_SET_META: Final = ("INSERT INTO meta (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value")


def state_path_for(database: Path) -> Path:
    """The state file beside a campaign database: ``dispatch.db`` -> ``dispatch.sandbox.db``."""
    return database.with_name(f"{database.stem}.sandbox.db")


class Replay(NamedTuple):
    """An answer kept for a repeat of its request under the same idempotency key (SMS &
    Voice Platform): a resend after a crash, from another process, is answered the same and
    billed once."""

    key: str
    fingerprint: str
    """The request body the key was first used with."""
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a starting sandbox takes from the file."""

    messages: dict[str, list[SentMessage]]
    """By kind, in billing order."""
    unreported: list[SentMessage]
    """Final-or-not messages whose delivery report was never acknowledged."""
    wallets: dict[str, Decimal]
    id_start: int
    replays: dict[str, list[Replay]]
    """By kind: the idempotent answers of the last :data:`KEEP_S`."""


class SandboxState:
    """The state file: :meth:`load` once, then :meth:`record` and :meth:`reported` as the
    sandbox bills and posts, :meth:`run` (the writer) in its task group, :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._rows: list[tuple[object, ...]] = []
        self._reported: list[tuple[str, str]] = []
        self._replays: list[tuple[object, ...]] = []
        self._spent: dict[str, Decimal] = {}
        self._wallets: dict[str, Decimal] = {}
        self.written = 0

    def load(self, wallets: dict[str, Decimal]) -> Loaded:
        """Open (creating) the file and read it; *wallets* are the starting balances of the
        kinds that have one, used when the file has none yet."""
        now = time.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn = sqlite3.connect(self.path, check_same_thread=False,
                                                isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM messages WHERE created < ?", (now - KEEP_S,))
            conn.execute("DELETE FROM replays WHERE created < ?", (now - KEEP_S,))
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            start = max(int(meta.get("next_id", "0")), id_start())
            conn.execute(_SET_META, ("next_id", str(start + ID_BLOCK)))
            conn.execute("COMMIT")
            rows = conn.execute(f"SELECT {_COLUMNS}, reported FROM messages "
                                "ORDER BY created, rowid").fetchall()
            replays: dict[str, list[Replay]] = {}
            for kind, *replay in conn.execute(
                    "SELECT kind, key, fingerprint, status, body FROM replays"):
                replays.setdefault(kind, []).append(Replay(*replay))
            for kind, balance in wallets.items():
                stored = meta.get(f"wallet:{kind}")
                self._wallets[kind] = Decimal(stored) if stored is not None else balance
            by_kind: dict[str, list[SentMessage]] = {}
            unreported: list[SentMessage] = []
            for row in rows:
                message = _message(row)
                by_kind.setdefault(message.kind, []).append(message)
                if message.callback_url is not None and not row[-1]:
                    unreported.append(message)
        except (sqlite3.Error, ValueError, ArithmeticError) as exc:
            self.close()
            raise ConfigError(f"cannot use it as the sandbox's state file ({exc}); if it is "
                              "damaged, delete it and the sandbox starts afresh",
                              file=self.path) from None
        log.debug("sandbox.state_loaded", messages=len(rows), unreported=len(unreported))
        return Loaded(by_kind, unreported, dict(self._wallets), start, replays)

    def record(self, kind: str, messages: Sequence[SentMessage]) -> None:
        """Billed messages, written at the next flush."""
        for m in messages:
            self._rows.append((kind, m.id, m.recipient, m.text, m.sender, m.segments,
                               str(m.cost), m.currency, m.created, m.final_at, int(m.delivered),
                               m.callback_url, m.channel, m.task_id, m.country))
        if kind in self._wallets:
            spent = sum((m.cost for m in messages), Decimal(0))
            self._spent[kind] = self._spent.get(kind, Decimal(0)) + spent

    def remember(self, kind: str, replay: Replay) -> None:
        """An idempotent answer, written at the next flush."""
        self._replays.append((kind, *replay, time.time()))

    def reported(self, kind: str, message_id: str) -> None:
        """A delivery report the receiver acknowledged."""
        self._reported.append((kind, message_id))

    async def run(self) -> None:
        """Write what :meth:`record`, :meth:`remember` and :meth:`reported` gathered, every
        :data:`FLUSH_INTERVAL_S`, until cancelled (a write under way finishes first)."""
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            if self._rows or self._reported or self._spent or self._replays:
                batch = self._take()
                await anyio.to_thread.run_sync(self._write, *batch)

    def close(self) -> None:
        """Write what is left and close the file."""
        if self._conn is None:
            return
        if self._rows or self._reported or self._spent or self._replays:
            self._write(*self._take())
        self._conn.close()
        self._conn = None

    def _take(self) -> tuple[list[tuple[object, ...]], list[tuple[str, str]],
                             dict[str, Decimal], list[tuple[object, ...]]]:
        batch = (self._rows, self._reported, self._spent, self._replays)
        self._rows, self._reported, self._spent, self._replays = [], [], {}, []
        return batch

    def _write(self, rows: list[tuple[object, ...]], reported: list[tuple[str, str]],
               spent: dict[str, Decimal], replays: list[tuple[object, ...]]) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.executemany("INSERT OR IGNORE INTO replays (kind, key, fingerprint, status, "
                             "body, created) VALUES (?, ?, ?, ?, ?, ?)", replays)
            conn.executemany("UPDATE messages SET reported = 1 WHERE kind = ? AND id = ?",
                             reported)
            for kind, amount in spent.items():
                found = conn.execute("SELECT value FROM meta WHERE name = ?",
                                     (f"wallet:{kind}",)).fetchone()
                balance = Decimal(found[0]) if found else self._wallets[kind]
                conn.execute(_SET_META, (f"wallet:{kind}", str(balance - amount)))
            conn.execute("COMMIT")
            self.written += len(rows)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error("sandbox.state_write_failed", file=str(self.path), messages=len(rows),
                      error=str(exc))


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """WAL on a new file needs the file to itself: a second process opening it at that
    moment (two runs started together) is told "locked" at once, whatever the busy timeout
    says, so it asks again, a bounded number of times."""
    for attempt in range(1, WAL_SWITCH_TRIES + 1):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or attempt == WAL_SWITCH_TRIES:
                raise
        time.sleep(WAL_SWITCH_WAIT_S)


def _message(row: Sequence[object]) -> SentMessage:
    (kind, message_id, recipient, text, sender, segments, cost, currency, created, final_at,
     delivered, callback_url, channel, task_id, country, _) = row
    return SentMessage(
        kind=str(kind), id=str(message_id), recipient=str(recipient), text=str(text),
        sender=None if sender is None else str(sender), segments=int(str(segments)),
        cost=Decimal(str(cost)), currency=str(currency), created=float(str(created)),
        final_at=float(str(final_at)), delivered=bool(delivered),
        callback_url=None if callback_url is None else str(callback_url),
        channel=str(channel), task_id=None if task_id is None else int(str(task_id)),
        country=str(country))


def redirected(message: SentMessage, url: str) -> SentMessage:
    """*message* with its report going to *url* (the account's callback now)."""
    return replace(message, callback_url=url)
