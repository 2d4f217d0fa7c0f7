import pytest
from hypothesis import settings

settings.register_profile("dispatch", deadline=None)
"""Property tests check values, not speed: a loaded machine must not fail them."""
settings.load_profile("dispatch")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
