"""How often the cyclic garbage collector runs while the engine plans or sends.

Planning and sending allocate a few container objects per row or per request (tuples,
lists, futures, headers), nearly all freed at once by reference counting. At Python's
default threshold (a young-generation collection every 700 allocations) the collector runs
thousands of times and costs about 9% of a plan and 14% of a send loop's CPU
(``bench/throughput.py``: 2.2 of 16 s for 20,000 messages). Every 50,000 it runs a few
dozen times. It still runs: turning it off would keep every cycle a request or a chunk
makes until the run ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

GEN0_THRESHOLD: Final = 50_000


def set_rare() -> None:
    """For a process that only plans: from now on."""
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])


@contextmanager
def rare_cyclic_gc() -> Iterator[None]:
    """The young generation collected every :data:`GEN0_THRESHOLD` allocations, inside."""
    before = gc.get_threshold()
    set_rare()
    try:
        yield
    finally:
        gc.set_threshold(*before)
