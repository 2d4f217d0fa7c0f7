from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from engine.sandbox import Sandbox, running_sandbox
from tests.sandbox_fixtures import fast_settings

settings.register_profile("dispatch", deadline=None)
"""Property tests check values, not speed: a loaded machine must not fail them."""
settings.load_profile("dispatch")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The provider simulator on 127.0.0.1, delivery reports due after a few milliseconds."""
    async with running_sandbox(fast_settings()) as running:
        yield running
