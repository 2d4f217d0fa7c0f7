"""The numbers a plan has seen so far: a Bloom filter over E.164 numbers.

Deduplication is exact: a valid row whose number appeared on an earlier valid line is
skipped as a duplicate of that line. A set of every number would grow the planner's memory
with the file, and sorting every stored row by number when the plan completes cost ~2.5 s a
million rows. This filter, in constant memory, says "certainly new" for almost every number;
the few it calls "maybe seen" (every real duplicate, plus a few false positives) are
resolved exactly by :meth:`engine.store.Store.finish_plan`, which reads only the rows with
those numbers.

A number that occurs twice is flagged whatever order the numbers are added in, so a resumed
plan rebuilds the filter from the rows already stored, and planning processes that write in
turn share one filter's bits in shared memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MIN_BYTES: Final = 1 << 16
MAX_BYTES: Final = 1 << 26
BITS_PER_FILE_BYTE: Final = 4
"""Sizes the filter from the recipients file. A CSV row takes at least ~12 bytes, so a number
has 48 bits or more, and one probe flags at most ~2% of new numbers; a second probe would
cut that to 0.2% but cost more in Python than resolving 2% exactly costs in SQL."""

_MIX: Final = 0x9E3779B97F4A7C15


def filter_bytes(file_bytes: int) -> int:
    """The size of the filter for a recipients file of *file_bytes*."""
    return max(MIN_BYTES, min(MAX_BYTES, file_bytes * BITS_PER_FILE_BYTE // 8))


class SeenNumbers:
    """One bit per number in *bits*, at a multiplicative hash of its digits."""

    def __init__(self, bits: bytearray | memoryview) -> None:
        self._bits = bits
        self._size = len(bits) * 8

    def add(self, numbers: Iterable[str]) -> list[str]:
        """Add *numbers* (``+`` and digits); those that may have been added before."""
        bits, size = self._bits, self._size
        maybe: list[str] = []
        for number in numbers:
            k = int(number[1:]) * _MIX % size
            mask = 1 << (k & 7)
            old = bits[k >> 3]
            if old & mask:
                maybe.append(number)
            else:
                bits[k >> 3] = old | mask
        return maybe
