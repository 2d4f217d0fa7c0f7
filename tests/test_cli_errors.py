"""No traceback reaches a user: every command against a database that is read-only, corrupt,
locked or missing, bad output paths, a closed pipe, and out-of-range options each end in one
line naming the file or the option.

Commands run as real subprocesses on real SQLite files. A read-only file or folder is made
so for an unprivileged user: as root (who ignores permissions) the commands run as
``nobody`` through ``setpriv``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

import anyio
import pytest

from engine import cli
from engine.errors import StoreError
from engine.routing import RateRow
from engine.store.sqlite.store import Store
from tests.helpers import ROOT, dispatch, write_campaign, write_config

ROWS: Final = 30
WEBHOOKS_UP_S: Final = 20.0
"""``dispatch webhooks`` serves until interrupted: it is stopped once up (or after this)."""
COMMAND_TIMEOUT_S: Final = 60.0
NOBODY: Final = 65534


@dataclass(frozen=True, slots=True)
class Outcome:
    command: str
    code: int
    stderr: str

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("dispatch: ")]


DATABASE_FREE: Final = ("check", "segments")
"""Commands that never open the database: run in one condition only (each run costs a
second of CPU, and the machine is shared)."""


def _commands(folder: Path) -> dict[str, list[str]]:
    config = ["--config", str(folder / "config.toml")]
    campaign = str(folder / "campaign.toml")
    return {
        "plan": ["plan", campaign, *config],
        "run": ["run", campaign, *config],
        "status": ["status", "test", *config],
        "report": ["report", "test", *config],
        "dlr": ["dlr", "test", *config],
        "check": ["check", *config],
        "rates show": ["rates", "show", *config],
        "rates refresh": ["rates", "refresh", *config],
        "segments": ["segments", "hello"],
        "webhooks": ["webhooks", "--port", "0", *config],
    }


def _run_all(folder: Path, *, as_nobody: bool = False,
             database_free: bool = False) -> dict[str, Outcome]:
    """Every command (*database_free*: those that never open the database too) at once:
    each writer waits out a locked database on its own."""
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] \
        if as_nobody else []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = {name: subprocess.Popen([*prefix, sys.executable, "-m", "engine", *args],
                                    cwd=folder, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, args in _commands(folder).items()
             if database_free or name not in DATABASE_FREE}
    outcomes = {}
    for name, proc in procs.items():
        if name == "webhooks":
            assert proc.stdout is not None
            proc.stdout.readline()  # its first line once up; nothing if it failed
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        outcomes[name] = Outcome(name, proc.returncode, err)
    return outcomes


def _assert_clean(outcomes: dict[str, Outcome], db: Path) -> None:
    """No traceback; a failure is one error line, naming the database file."""
    for o in outcomes.values():
        assert "Traceback" not in o.stderr, (o.command, o.stderr)
        assert "internal error" not in o.stderr, (o.command, o.stderr)
        if o.code != 0:
            assert len(o.errors()) == 1, (o.command, o.stderr)
            assert str(db) in o.errors()[0], (o.command, o.stderr)


def _failed_on(outcomes: dict[str, Outcome], db: Path, *commands: str, word: str) -> None:
    for name in commands:
        o = outcomes[name]
        assert o.code != 0, (name, o.stderr)
        assert o.errors() == [o.errors()[0]] and word in o.errors()[0], (name, o.stderr)
        assert str(db) in o.errors()[0]


@pytest.fixture(scope="module")
def planned() -> Iterator[tuple[Path, bytes]]:
    """A folder others can read, with a config and a small campaign planned in it, and the
    planned database's bytes (a campaign is planned for its path: each case reuses it)."""
    top = Path(tempfile.mkdtemp(prefix="dispatch-cli-errors-"))
    top.chmod(0o755)
    folder = top / "case"
    folder.mkdir(mode=0o755)
    write_config(folder)
    csv = "phone,name\n" + "".join(f"+42190{i:07d},N{i}\n" for i in range(ROWS))
    write_campaign(folder, csv)
    done = dispatch("plan", str(folder / "campaign.toml"), "--config",
                    str(folder / "config.toml"), cwd=folder)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(folder / "dispatch.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield folder, (folder / "dispatch.db").read_bytes()
    folder.chmod(0o755)
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def case(planned: tuple[Path, bytes]) -> Iterator[Path]:
    """The planned folder as planned, readable by every user."""
    folder, database = planned
    folder.chmod(0o755)
    keep = {"config.toml", "campaign.toml", "recipients.csv"}
    for path in folder.iterdir():
        if path.name not in keep:
            path.unlink()
    (folder / "dispatch.db").write_bytes(database)
    yield folder
    folder.chmod(0o755)


def _unprivileged() -> bool:
    """Whether the commands can be run so that file permissions bind them."""
    if os.geteuid() != 0:
        return True
    return shutil.which("setpriv") is not None


needs_unprivileged = pytest.mark.skipif(
    not _unprivileged(), reason="root ignores permissions and setpriv is not installed")


@needs_unprivileged
@pytest.mark.parametrize("folder_writable", [
    pytest.param(False, id="read-only-folder"), pytest.param(True, id="read-only-file")])
def test_read_only_database_is_read_and_never_written(case: Path, folder_writable: bool) -> None:
    """status and report read a read-only database and change nothing in it; the commands
    that write say it cannot be written (plan, of a campaign planned, writes nothing)."""
    db = case / "dispatch.db"
    db.chmod(0o444)
    before = db.read_bytes()
    as_nobody = os.geteuid() == 0
    if folder_writable:
        case.chmod(0o777)
    else:
        case.chmod(0o555)
    outcomes = _run_all(case, as_nobody=as_nobody)
    _assert_clean(outcomes, db)
    for name in ("status", "report"):
        assert outcomes[name].code == 0, (name, outcomes[name].stderr)
    _failed_on(outcomes, db, "run", "dlr", "webhooks", word="cannot be written")
    assert db.read_bytes() == before


def _corrupt_index(db: Path) -> None:
    """Overwrite the second half of every leaf page of the state index with 0xFF bytes."""
    with sqlite3.connect(db) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'messages_by_state' AND pagetype = 'leaf'")]
    assert pages
    with db.open("r+b") as f:
        for number in pages:
            f.seek((number - 1) * page + page // 2)
            f.write(b"\xff" * (page // 2))


def test_corrupt_database_is_one_line_saying_what_to_do(case: Path) -> None:
    """A malformed index page: the commands that read it say the file is corrupt and how to
    recover it; none shows a traceback (run's task group included)."""
    db = case / "dispatch.db"
    _corrupt_index(db)
    outcomes = _run_all(case)
    _assert_clean(outcomes, db)
    _failed_on(outcomes, db, "status", "run", "dlr", word="corrupt")
    assert ".recover" in outcomes["status"].errors()[0]


def test_locked_database_readers_read_writers_say_locked(case: Path) -> None:
    """Another connection holds a write transaction: status and report still read; the
    commands that write wait, then say the database is locked."""
    db = case / "dispatch.db"
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE meta SET value = value WHERE key = 'schema'")
        outcomes = _run_all(case)
    finally:
        holder.close()
    _assert_clean(outcomes, db)
    for name in ("status", "report"):
        assert outcomes[name].code == 0, (name, outcomes[name].stderr)
    _failed_on(outcomes, db, "run", "dlr", "webhooks", word="locked")


def test_missing_database_is_not_created_by_a_read(case: Path) -> None:
    """With no database, status and report say so, naming the file, and leave none behind;
    no command shows a traceback."""
    db = case / "dispatch.db"
    db.unlink()
    for name in ("status", "report"):
        done = dispatch(*_commands(case)[name], cwd=case)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == (f"dispatch: error: {db}: no database here: nothing has "
                                       "been planned with this config (dispatch plan CAMPAIGN "
                                       "creates it)")
        assert not db.exists() and not list(case.glob("dispatch.db*"))
    outcomes = _run_all(case, database_free=True)
    _assert_clean(outcomes, db)
    for name in ("plan", "run", "check", "segments"):
        assert outcomes[name].code == 0, (name, outcomes[name].stderr)


def test_report_to_an_unwritable_path_names_it(case: Path) -> None:
    """--csv into a missing folder or onto a folder: exit 2, the path and the OS's reason;
    onto a full device: exit 1."""
    config = ["--config", str(case / "config.toml")]
    missing = case / "no-such-folder" / "r.csv"
    done = dispatch("report", "test", "--csv", str(missing), *config, cwd=case)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"dispatch: error: {missing}: cannot write the report here: No such file or directory")
    done = dispatch("report", "test", "--csv", str(case), *config, cwd=case)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"dispatch: error: {case}: cannot write the report here: Is a directory")
    if Path("/dev/full").exists():
        done = dispatch("report", "test", "--csv", "/dev/full", *config, cwd=case)
        assert (done.returncode, done.stderr.strip()) == (
            1, "dispatch: error: /dev/full: writing the report failed: No space left on device")


def test_closed_standard_output_ends_quietly(case: Path) -> None:
    """A reader that has gone (| head): exit 141 as a program killed by SIGPIPE, nothing on
    stderr."""
    for args in (["report", "test", "--json"], ["report", "test"], ["status", "test"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # gone before the first write: every write fails
        try:
            done = subprocess.run([sys.executable, "-m", "engine", *args, "--config",
                                   str(case / "config.toml")], cwd=case, stdout=write_end,
                                  stderr=subprocess.PIPE, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        finally:
            os.close(write_end)
        assert (done.returncode, done.stderr) == (141, ""), args


@pytest.mark.parametrize(("args", "blamed"), [
    pytest.param(["run", "c.toml", "--webhooks", "99999"], "--webhooks", id="webhooks-high"),
    pytest.param(["run", "c.toml", "--webhooks", "0"], "--webhooks", id="webhooks-zero"),
    pytest.param(["webhooks", "--port", "70000"], "--port", id="port-high"),
    pytest.param(["webhooks", "--port", "-1"], "--port", id="port-negative"),
    pytest.param(["run", "c.toml", "--dlr-wait", "-5"], "--dlr-wait", id="dlr-wait-negative"),
    pytest.param(["run", "c.toml", "--dlr-wait", "nan"], "--dlr-wait", id="dlr-wait-nan"),
    pytest.param(["run", "c.toml", "--workers", "-1"], "--workers", id="workers-negative"),
    pytest.param(["plan", "c.toml", "--workers", "1000"], "--workers", id="workers-many"),
    pytest.param(["report", "x", "--csv", "r.csv", "--json"], "--json", id="csv-and-json"),
])
def test_out_of_range_option_is_a_usage_error_naming_it(args: list[str], blamed: str) -> None:
    """Exit 2 before anything runs, the message naming the option at fault."""
    done = dispatch(*args, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 2
    assert f"error: argument {blamed}" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_store_errors_in_a_task_group_come_out_as_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A task group failing with the engine's errors is reported as their one message."""

    async def fail() -> None:
        raise StoreError("the database file is corrupt", path="x.db")

    async def tasks() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)
            tg.start_soon(fail)

    with pytest.raises(BaseExceptionGroup) as caught:
        anyio.run(tasks)
    code = cli._failure(caught.value, argparse.Namespace(config=ROOT / "config.toml"))
    assert (code, capsys.readouterr().err) == (
        1, "dispatch: error: x.db: the database file is corrupt\n")


@pytest.mark.anyio
async def test_full_database_is_a_store_error_saying_so(tmp_path: Path) -> None:
    """SQLite out of space (a page limit stands in for a full disk): the write fails as one
    StoreError naming the file and the disk, and the store is still readable after it."""
    db = tmp_path / "dispatch.db"
    rows = [RateRow("smsvoip", "", f"{n:09d}", Decimal("0.01"), "EUR") for n in range(5_000)]
    with pytest.raises(StoreError) as caught:
        async with Store.open(db) as store:
            pages = (await store.db.execute_fetchall("PRAGMA page_count"))[0][0]
            await store.db.execute(f"PRAGMA max_page_count = {pages + 1}")
            await store.save_rates("smsvoip", 0.0, rows)
    assert str(caught.value).startswith(f"{db}: the disk is full")
    async with Store.open(db, read_only=True) as store:
        assert await store.cached_rates("smsvoip") is None
