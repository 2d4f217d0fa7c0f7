"""The event loop every command runs on: uvloop where it is installed, else asyncio's own.

A run's throughput is its event loop thread's CPU per request (DESIGN.md, "Measured"), and
uvloop's loop, timers, futures and socket transports cost less of it than asyncio's: the
dispatcher, which waits on more futures and events per message than a bare send loop does,
gains the most (``bench/throughput.py --loop asyncio`` against the default). The sandbox
serves on the same choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio

LOOPS: Final = ("auto", "asyncio", "uvloop")
"""``auto``: uvloop when installed."""

T = TypeVar("T")


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop *name* stands for (``None``: asyncio's own). ``uvloop`` when it is not
    installed raises :class:`ImportError`."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def run(func: Callable[..., Awaitable[T]], *args: object, loop: str = "auto") -> T:
    """``anyio.run`` on the asyncio backend with the loop *loop* stands for."""
    return anyio.run(func, *args, backend="asyncio",
                     backend_options={"loop_factory": loop_factory(loop)})
