"""Which event loop the commands run on."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from engine import event_loop
from engine.errors import SandboxError
from engine.sandbox.command import serve
from engine.sandbox.settings import default_settings


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_commands_run_on_uvloop_when_installed() -> None:
    """``auto`` (what every command uses) is uvloop where it is installed."""
    assert isinstance(event_loop.run(running_loop), uvloop.Loop)


def test_asyncio_loop_when_asked_for() -> None:
    """``asyncio`` is asyncio's own loop, for comparing the two."""
    loop = event_loop.run(running_loop, loop="asyncio")
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, ``auto`` falls back to asyncio's loop; asking for uvloop is an error
    that the sandbox command names."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert event_loop.loop_factory("auto") is None
    with pytest.raises(ImportError):
        event_loop.loop_factory("uvloop")
    with pytest.raises(SandboxError, match="--loop uvloop needs the uvloop package"):
        serve(default_settings(), port=0, loop="uvloop")
