"""The run's checkpoint writer, in a process of its own.

A writer thread shares the GIL with the event loop: each SQLite call it makes gives the GIL
up and must win it back from a loop that is busy sending, so a 1 ms group commit took 7 ms
(median; 25 ms at p90) beside a CPU-bound dispatch, senders waiting for their marks the
whole time, and the loop itself waited on the GIL for part of every commit. A process has
no GIL to share. The run sends each group commit down a pipe and waits for one byte back.

Frames on the pipe: parent to child, a 4-byte big-endian length and a ``marshal``-ed
``(kind, arguments)``: ``WRITE`` with the arguments of
:meth:`~engine.store.sqlite.checkpoint_writer.CheckpointWriter.write`, or ``CLAIM`` with
those of :meth:`~engine.store.sqlite.checkpoint_writer.CheckpointWriter.claim`; child to
parent, ``0`` when committed, ``2`` and a 4-byte count when committed but that many rows
were not the worker's to write, ``3``, a 4-byte length and the ``marshal``-ed claim, or
``1``, a 4-byte length and a UTF-8 error message. The child answers
``0`` once when its connection is open. It runs in a session of its own, so that a terminal's
Ctrl-C or a signal to the run's process group reaches the run alone, which finishes its
in-flight work and flushes through the child; the child exits when its input closes, which
is also what happens when the run is killed.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from engine.errors import StoreError
from engine.store.sqlite.checkpoint_writer import CLAIM, CLAIMED, NOT_HELD, OK, WRITE

EXIT_WAIT_S: Final = 10.0
"""How long closing waits for the child to finish its last commit before killing it."""
PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[3])
"""On the child's ``PYTHONPATH``: it imports this ``engine``, installed or not."""


class CheckpointProcess:
    """The parent's end: one commit at a time (the caller serialises them)."""

    def __init__(self, path: Path, campaign_id: int, worker_id: str | None = None) -> None:
        self.path = path
        self.campaign_id = campaign_id
        self.worker_id = worker_id
        self._process: Process | None = None
        self._replies: BufferedByteReceiveStream | None = None

    async def start(self) -> None:
        """Start the child (once) and wait until its connection is open."""
        if self._process is not None:
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        try:
            self._process = await anyio.open_process(
                [sys.executable, "-m", "engine.store.sqlite.checkpoint_writer", str(self.path),
                 str(self.campaign_id), *([self.worker_id] if self.worker_id else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env,
                start_new_session=True)
        except OSError as exc:
            raise StoreError(f"cannot start the checkpoint writer: {exc}",
                             path=self.path) from None
        assert self._process.stdout is not None
        self._replies = BufferedByteReceiveStream(self._process.stdout)
        await self._reply()

    async def write(self, sending: Sequence[tuple[float, int]],
                    updates: Sequence[tuple[Any, ...]],
                    committed: Sequence[tuple[int, int]] = ()) -> int:
        """Commit one transaction in the child; returns once it is on disk, with how many
        rows were not written because the worker no longer holds them."""
        await self._send(WRITE, (list(sending), [tuple(u) for u in updates],  # no NamedTuple
                                 list(committed)))
        return int(await self._reply())

    async def claim(self, provider: str, state: str, after_line: int, limit: int,
                    budget_nanos: int | None, sending: bool = False
                    ) -> tuple[list[tuple[Any, ...]], bool]:
        """The worker's claim, committed in the child: the rows held (the columns of
        :class:`~engine.store.records.Outgoing`) and whether the next did not fit."""
        await self._send(CLAIM, (provider, state, after_line, limit, budget_nanos, sending))
        reply = await self._reply()
        assert isinstance(reply, bytes)
        rows, over_budget = marshal.loads(reply)
        return rows, over_budget

    async def _send(self, kind: int, arguments: tuple[Any, ...]) -> None:
        if self._process is None:
            await self.start()
        assert self._process is not None and self._process.stdin is not None
        frame = marshal.dumps((kind, arguments))
        try:
            await self._process.stdin.send(len(frame).to_bytes(4, "big") + frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise StoreError("the checkpoint writer has exited", path=self.path) from None

    async def _reply(self) -> int | bytes:
        """The child's answer: a count of rows not held, or a claim's bytes."""
        assert self._replies is not None
        try:
            status = await self._replies.receive_exactly(1)
            if status == OK:
                return 0
            if status == NOT_HELD:
                return int.from_bytes(await self._replies.receive_exactly(4), "big")
            size = int.from_bytes(await self._replies.receive_exactly(4), "big")
            if status == CLAIMED:
                return await self._replies.receive_exactly(size)
            problem = (await self._replies.receive_exactly(size)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            raise StoreError("the checkpoint writer has exited", path=self.path) from None
        raise StoreError(f"checkpoint failed: {problem}", path=self.path)

    async def close(self) -> None:
        """Let the child finish and exit (again is fine); killed if it has not within
        :data:`EXIT_WAIT_S`."""
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.move_on_after(EXIT_WAIT_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
