"""The run's checkpoint writer, in a process of its own.

A writer thread shares the GIL with the event loop: each SQLite call it makes gives the GIL
up and must win it back from a loop that is busy sending, so a 1 ms group commit took 7 ms
(median; 25 ms at p90) beside a CPU-bound dispatch, senders waiting for their marks the
whole time, and the loop itself waited on the GIL for part of every commit. A process has
no GIL to share.

Frames on the pipe: parent to child, a 4-byte big-endian length and a ``marshal``-ed
``(kind, arguments)``: ``WRITE`` with the arguments of
:meth:`~engine.store.sqlite.checkpoint_writer.CheckpointWriter.write`, or ``CLAIM`` with
those of :meth:`~engine.store.sqlite.checkpoint_writer.CheckpointWriter.claim`; child to
parent, ``0`` when committed, ``2`` and a 4-byte count when committed but that many rows
were not the worker's to write, ``3``, a 4-byte length and the ``marshal``-ed claim, or
``1``, a 4-byte length and a UTF-8 error message. The child answers ``0`` once when its
connection is open, then each frame in the order it was sent, one transaction each: a frame
may be sent while earlier ones are still being committed, and its answer is the next one
after theirs. The parent reads answers as they arrive, in the event loop's callback for the
pipe (:class:`_Answers`), and wakes whoever waits for one there: no task has to be scheduled
to read it first.

The child runs in a session of its own, so that a terminal's Ctrl-C or a signal to the
run's process group reaches the run alone, which finishes its in-flight work and flushes
through the child; the child exits when its input closes, which is also what happens when
the run is killed.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, cast

import anyio

from engine.errors import StoreError
from engine.store.sqlite.checkpoint_writer import CLAIM, CLAIMED, FAILED, NOT_HELD, OK, WRITE

EXIT_WAIT_S: Final = 10.0
"""How long closing waits for the child to finish its last commit before killing it."""
PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[3])
"""On the child's ``PYTHONPATH``: it imports this ``engine``, installed or not."""
_OK, _FAILED, _NOT_HELD, _CLAIMED = OK[0], FAILED[0], NOT_HELD[0], CLAIMED[0]
_EXITED: Final = "the checkpoint writer has exited"


class Answer:
    """The child's answer to one frame, once it has come: :attr:`done` is set then, with
    :attr:`not_held` (a write's rows that were not the worker's), :attr:`claimed` (a claim's
    ``marshal``-ed rows) or :attr:`problem` (the frame failed: nothing of it was written)."""

    __slots__ = ("claimed", "done", "not_held", "on_done", "problem")

    def __init__(self, on_done: Callable[[Answer], object] | None = None) -> None:
        self.done = anyio.Event()
        self.not_held = 0
        self.claimed = b""
        self.problem: str | None = None
        self.on_done = on_done
        """Called with it when it comes, in the pipe's callback, before anyone waiting wakes."""

    def _set(self) -> None:
        if self.on_done is not None:
            self.on_done(self)
        self.done.set()

    async def wait(self, path: Path) -> Answer:
        """Wait for it; a failed frame raises :class:`StoreError`."""
        await self.done.wait()
        if self.problem is not None:
            raise StoreError(self.problem, path=path)
        return self


class _Answers(asyncio.SubprocessProtocol):
    """The child's answers, read from its stdout as they arrive, each given to the oldest
    frame still waiting for one (the child answers in order)."""

    def __init__(self) -> None:
        self.waiting: deque[Answer] = deque()
        self.exited = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._ended = False
        """The child's stdout has closed: every answer it gave has been read."""

    def expect(self, answer: Answer) -> None:
        """Give *answer* the next answer not given yet, now or once it comes (its own
        callback may expect another: each answer is taken off the buffer before it is
        given)."""
        self.waiting.append(answer)
        self._answer()
        if self._ended:
            self._fail_all()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._buffer += data
        self._answer()

    def _answer(self) -> None:
        """Give each whole answer in the buffer to the oldest frame waiting."""
        buffer = self._buffer
        while buffer and self.waiting:
            status = buffer[0]
            if status == _OK:
                size = 1
            elif len(buffer) < 5:
                return
            elif status == _NOT_HELD:
                size = 5
            else:
                size = 5 + int.from_bytes(buffer[1:5], "big")
                if len(buffer) < size:
                    return
            answer = self.waiting.popleft()
            if status == _NOT_HELD:
                answer.not_held = int.from_bytes(buffer[1:5], "big")
            elif status == _CLAIMED:
                answer.claimed = bytes(buffer[5:size])
            elif status != _OK:
                answer.problem = f"checkpoint failed: {buffer[5:size].decode()}"
            del buffer[:size]
            answer._set()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._ended = True
            self._fail_all()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def _fail_all(self) -> None:
        """The child's answers have ended: no frame still waiting will be answered."""
        while self.waiting:
            answer = self.waiting.popleft()
            answer.problem = _EXITED
            answer._set()


class CheckpointProcess:
    """The parent's end: frames sent in order (:meth:`send`, at once, without waiting for
    earlier answers), each answered in that order."""

    def __init__(self, path: Path, campaign_id: int, worker_id: str | None = None) -> None:
        self.path = path
        self.campaign_id = campaign_id
        self.worker_id = worker_id
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._answers: _Answers | None = None
        self._closed = False
        self._starting = anyio.Lock()

    @property
    def pid(self) -> int | None:
        return self._transport.get_pid() if self._transport is not None else None

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode() if self._transport is not None else None

    async def start(self) -> None:
        """Start the child (once) and wait until its connection is open."""
        if self._transport is not None and not self._closed:
            return  # no lock on the way of every mark
        async with self._starting:
            await self._start()

    async def _start(self) -> None:
        if self._transport is not None:
            if self._closed:
                raise StoreError(_EXITED, path=self.path)
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        args = [sys.executable, "-m", "engine.store.sqlite.checkpoint_writer", str(self.path),
                str(self.campaign_id), *([self.worker_id] if self.worker_id else [])]
        try:
            transport, answers = await asyncio.get_running_loop().subprocess_exec(
                _Answers, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                env=env, start_new_session=True)
        except OSError as exc:
            raise StoreError(f"cannot start the checkpoint writer: {exc}",
                             path=self.path) from None
        # None: the child has closed it (exited); uvloop's is not an asyncio.WriteTransport
        stdin = cast(asyncio.WriteTransport | None, transport.get_pipe_transport(0))
        self._transport, self._stdin, self._answers = transport, stdin, answers
        opened = Answer()
        answers.expect(opened)
        await opened.wait(self.path)

    def send(self, kind: int, arguments: tuple[Any, ...],
             on_done: Callable[[Answer], object] | None = None) -> Answer:
        """Send one frame now (after :meth:`start`); its answer comes in order, and is given
        to *on_done* as it comes."""
        answers, stdin = self._answers, self._stdin
        if answers is None or stdin is None or stdin.is_closing():
            raise StoreError(_EXITED, path=self.path)
        frame = marshal.dumps((kind, arguments))
        answer = Answer(on_done)
        answers.expect(answer)
        if not answer.done.is_set():
            stdin.write(len(frame).to_bytes(4, "big") + frame)
        return answer

    async def write(self, sending: Sequence[tuple[float, int]],
                    updates: Sequence[tuple[Any, ...]],
                    committed: Sequence[tuple[int, int]] = ()) -> int:
        """Commit one transaction in the child; returns once it is on disk, with how many
        rows were not written because the worker no longer holds them."""
        await self.start()
        answer = self.send(WRITE, write_arguments(sending, updates, committed))
        return (await answer.wait(self.path)).not_held

    async def claim(self, provider: str, state: str, after_line: int, limit: int,
                    budget_nanos: int | None, sending: bool = False
                    ) -> tuple[list[tuple[Any, ...]], bool]:
        """The worker's claim, committed in the child: the rows held (the columns of
        :class:`~engine.store.records.Outgoing`) and whether the next did not fit."""
        await self.start()
        answer = self.send(CLAIM, (provider, state, after_line, limit, budget_nanos, sending))
        rows, over_budget = marshal.loads((await answer.wait(self.path)).claimed)
        return rows, over_budget

    async def close(self) -> None:
        """Let the child finish and exit (again is fine); killed if it has not within
        :data:`EXIT_WAIT_S`."""
        transport, answers, stdin = self._transport, self._answers, self._stdin
        if transport is None or answers is None or self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if stdin is not None:
                stdin.close()
            with anyio.move_on_after(EXIT_WAIT_S):
                await asyncio.shield(answers.exited)
            if transport.get_returncode() is None:
                transport.kill()
                await asyncio.shield(answers.exited)
            transport.close()


def write_arguments(sending: Sequence[tuple[float, int]], updates: Sequence[tuple[Any, ...]],
                    committed: Sequence[tuple[int, int]]) -> tuple[Any, ...]:
    """A ``WRITE`` frame's arguments, as ``marshal`` takes them (no NamedTuple)."""
    return (list(sending), [tuple(u) for u in updates], list(committed))
