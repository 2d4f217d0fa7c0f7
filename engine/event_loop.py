"""The event loop every command runs on: uvloop where it is installed, else asyncio's own.

A run's throughput is its event loop thread's CPU per request (DESIGN.md, "Measured"), and
uvloop's socket and pipe transports cost less of it than asyncio's. ``bench/throughput.py``
at 100k messages, the phases in turns: on uvloop the bare send loop used 6% less loop CPU
per message and a dispatch (which also talks to its checkpoint process over pipes) 12%
less; against adapters that do no I/O (``bench/dispatcher_overhead.py``) the two loops are
alike. The sandbox serves on the same choice.
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
