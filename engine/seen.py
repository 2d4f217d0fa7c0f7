"""The numbers a plan has seen so far: a Bloom filter over E.164 numbers.

Deduplication is exact: a valid row whose number appeared on an earlier valid line is
skipped as a duplicate of that line. A set of every number would grow the planner's memory
with the file, and sorting every stored row by number when the plan completes cost ~2.5 s a
million rows. This filter, in constant memory, says "certainly new" for almost every number;
the few it calls "maybe seen" (every real duplicate, plus rare false positives) are
resolved exactly by :meth:`engine.store.Store.finish_plan`, which reads only the rows with
those numbers.

Which numbers are candidates does not depend on the order they are added in: a number that
occurs twice is a candidate whichever copy comes second. So a resumed plan rebuilds the
filter from the rows already stored, and planning processes that write in turn can share
one filter's bits in shared memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MIN_BYTES: Final = 1 << 16
MAX_BYTES: Final = 1 << 26
BITS_PER_FILE_BYTE: Final = 4
"""Sizes the filter from the recipients file: a CSV row takes at least ~12 bytes, so this is
at least 48 bits a number, a false-positive rate well under 1% with two probes."""

_MIX1: Final = 0x9E3779B97F4A7C15
_MIX2: Final = 0xC2B2AE3D27D4EB4F
_MASK: Final = (1 << 64) - 1


def filter_bytes(file_bytes: int) -> int:
    """The size of the filter for a recipients file of *file_bytes*."""
    return max(MIN_BYTES, min(MAX_BYTES, file_bytes * BITS_PER_FILE_BYTE // 8))


class SeenNumbers:
    """Two probes per number into *bits*; numbers are ``+`` and digits."""

    def __init__(self, bits: bytearray | memoryview) -> None:
        self._bits = bits
        self._size = len(bits) * 8

    def add(self, numbers: Iterable[str]) -> list[str]:
        """Add *numbers*; those that may have been added before."""
        bits, size = self._bits, self._size
        maybe: list[str] = []
        for number in numbers:
            x = int(number[1:])
            a = ((x * _MIX1) & _MASK) % size
            b = ((x * _MIX2) & _MASK) % size
            old_a = bits[a >> 3]
            old_b = bits[b >> 3]
            bit_a = 1 << (a & 7)
            bit_b = 1 << (b & 7)
            if old_a & bit_a and old_b & bit_b:
                maybe.append(number)
                continue
            bits[a >> 3] = old_a | bit_a
            bits[b >> 3] |= bit_b
        return maybe
