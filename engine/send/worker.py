"""The workers of a campaign: every `dispatch run` registers as one in the store, with a
heartbeat, and any number of them send one campaign together (the claim model:
:mod:`engine.store.states`).

A worker is a row (:class:`~engine.store.records.WorkerRecord`): its host, pid and
heartbeat. A worker is live while it is alive: on this host (same name and boot id), while
its pid exists and is the same process (its start time, against pid reuse) and not a
zombie, whatever its heartbeat says, so that a SIGKILLed run's messages are rescued at once
here and a stopped or busy one is never run over; on another host, while its heartbeat is
younger than :data:`WORKER_LEASE_S`. The heartbeat is written from a thread of its own, so
that it keeps beating while the event loop is busy (planning in this process holds it for
seconds). What a worker that is not live held is rescued by the others
(:meth:`engine.store.sqlite.outbox.SqliteOutbox.rescue`), which remove its row.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import structlog

from engine.errors import StoreError
from engine.store.protocols import Heartbeats, WorkerRegistry
from engine.store.records import WorkerRecord

log = structlog.get_logger()

WORKER_LEASE_S: Final = 15.0
"""A worker on another host whose heartbeat is older than this is taken to be dead."""
WORKER_HEARTBEAT_S: Final = 3.0
PLAN_WAIT_S: Final = 0.5
"""How often a worker waiting for another's plan looks at it again."""
"""How often a worker writes its heartbeat: several beats fit in a lease."""
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
PROC: Final = Path("/proc")


@dataclass(frozen=True, slots=True)
class Host:
    """Where this process runs: two processes are on one host if both are equal."""

    name: str
    boot_id: str

    @classmethod
    def here(cls) -> Host:
        try:
            boot_id = BOOT_ID.read_text(encoding="ascii").strip()
        except OSError:
            boot_id = ""
        return cls(socket.gethostname(), boot_id)


def process_started(pid: int) -> int | None:
    """When process *pid* started, in clock ticks after boot (``/proc/PID/stat``); None where
    that cannot be read."""
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` from its third field (the state) on: the command name before it
    may hold spaces and parentheses."""
    return (PROC / str(pid) / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()


def process_alive(pid: int, started: int | None) -> bool:
    """Process *pid* of this host exists, is not a zombie, and (if *started* is known and
    ``/proc`` can tell) is the one that started then, not a later one given the same pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return True
    if fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == str(started)


def is_live(holder: WorkerRecord, *, here: Host, now: float) -> bool:
    """The lease rule: may *holder* still be sending its campaign?"""
    if holder.host == here.name and holder.boot_id == here.boot_id:
        return process_alive(holder.pid, holder.pid_started)
    return now - holder.heartbeat_at < WORKER_LEASE_S


class Worker:
    """This process as its campaign's worker: its row, and the thread that heartbeats it
    (made on the event loop's thread).

    :attr:`lost` is set if its row disappears (another host's run found the heartbeat
    lapsed and took over): the run must stop sending."""

    def __init__(self, record: WorkerRecord, heartbeat: Heartbeats) -> None:
        self.record = record
        self.lost = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="worker-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the heartbeat; returns once its thread has."""
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        with closing(self._heartbeat) as heartbeat:
            while not self._stop.wait(WORKER_HEARTBEAT_S):
                try:
                    alive = heartbeat.beat(time.time())
                except StoreError as exc:
                    log.warning("worker.heartbeat_failed", error=str(exc))
                    continue
                if not alive:
                    log.error("worker.lease_lost", campaign=self.record.campaign)
                    anyio.from_thread.run_sync(self.lost.set, token=self._token)
                    return

    async def watch(self, on_lost: Callable[[str], object]) -> None:
        """Call *on_lost* with a reason once the lease is lost (a task of the run's group)."""
        await self.lost.wait()
        on_lost("another process took the campaign over")


@asynccontextmanager
async def campaign_worker(store: WorkerRegistry, campaign: str) -> AsyncIterator[Worker]:
    """Be one of *campaign*'s workers while the block runs, heartbeating; its row is removed
    on the way out, however the block ends (a killed process's row is left, and rescued by
    the lease rule)."""
    here = Host.here()
    now = time.time()
    pid = os.getpid()
    me = WorkerRecord(id=uuid.uuid4().hex, campaign=campaign, host=here.name,
                      boot_id=here.boot_id, pid=pid, pid_started=process_started(pid),
                      started_at=now, heartbeat_at=now)
    await store.register_worker(me)
    log.debug("worker.registered", campaign=campaign, worker=me.id)
    worker = Worker(me, store.heartbeat(me.id))
    worker.start()
    try:
        yield worker
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(worker.stop)
            await store.release_worker(me.id)
        log.debug("worker.released", campaign=campaign, worker=me.id)


def lease_rule() -> Callable[[WorkerRecord], bool]:
    """:func:`is_live` for this host, at the time it is asked."""
    here = Host.here()
    return lambda holder: is_live(holder, here=here, now=time.time())


async def wait_for_planner(store: WorkerRegistry, me: WorkerRecord) -> None:
    """Let the campaign's earliest live worker plan it: return once its plan is complete, or
    once no live worker registered before *me* (which then plans, or resumes the plan of a
    dead one)."""
    live = lease_rule()
    while True:
        record = await store.campaign(me.campaign)
        if record is not None and record.plan_complete:
            return
        earlier = [w for w in await store.workers(me.campaign)
                   if (w.started_at, w.id) < (me.started_at, me.id) and live(w)]
        if not earlier:
            return
        log.info("worker.waiting_for_plan", campaign=me.campaign, planner=earlier[0].pid)
        await anyio.sleep(PLAN_WAIT_S)
