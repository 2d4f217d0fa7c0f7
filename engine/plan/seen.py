"""The numbers a plan has seen so far: a Bloom filter over E.164 numbers.

Deduplication is exact: a valid row whose number appeared on an earlier valid line is
skipped as a duplicate of that line. A set of every number would grow the planner's memory
with the file, and sorting every stored row by number when the plan completes cost ~2.5 s a
million rows. This filter, in constant memory, says "certainly new" for almost every number;
the few it calls "maybe seen" (every real duplicate, plus a few false positives) are
resolved exactly by :meth:`~engine.store.sqlite.store.Store.finish_plan`, which reads only
the rows with those numbers.

A number that occurs twice is flagged whatever order the numbers are added in, so a resumed
plan rebuilds the filter from the rows already stored, and planning processes that write in
turn share one filter's bits in shared memory.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable
from pathlib import Path
from typing import Final

MIN_BYTES: Final = 1 << 16
MAX_BYTES: Final = 1 << 26
FILE_BYTES_PER_BIT: Final = 2
"""Sizes the filter from the recipients file, so that its memory stays a small fraction of
what a set would take. A typical campaign row of ~100 bytes gets 50 bits, and one probe
flags ~2% of new numbers as candidates; a file of bare numbers (~14 bytes a row) gets 7
bits and ~13%: still exact, with more rows read at the end. A second probe would flag
fewer but cost more in Python than resolving them in SQL costs."""

_MIX: Final = 0x9E3779B97F4A7C15


def filter_bytes(file_bytes: int) -> int:
    """The size of the filter for a recipients file of *file_bytes*."""
    return max(MIN_BYTES, min(MAX_BYTES, file_bytes // FILE_BYTES_PER_BIT // 8))


def create_bits_file(path: Path, file_bytes: int) -> None:
    """An all-zero filter for a recipients file of *file_bytes*, which processes share by
    mapping it (:meth:`SeenNumbers.mapped`); its pages take memory only once written."""
    with path.open("wb") as f:
        f.truncate(filter_bytes(file_bytes))


class SeenNumbers:
    """One bit per number in *bits*, at a multiplicative hash of its digits."""

    def __init__(self, bits: bytearray | mmap.mmap) -> None:
        self._bits = bits
        self._size = len(bits) * 8

    @classmethod
    def mapped(cls, path: Path) -> SeenNumbers:
        """The filter in *path*, shared with every process that maps it."""
        with path.open("r+b") as f:
            return cls(mmap.mmap(f.fileno(), 0))

    def close(self) -> None:
        if isinstance(self._bits, mmap.mmap):
            self._bits.close()

    def add(self, numbers: Iterable[str]) -> list[str]:
        """Add *numbers* (``+`` and digits, which ``int`` reads sign and all); those that may
        have been added before."""
        bits, size = self._bits, self._size
        maybe: list[str] = []
        for number in numbers:
            k = int(number) * _MIX % size
            i = k >> 3
            old = bits[i]
            new = old | 1 << (k & 7)
            if new == old:
                maybe.append(number)
            else:
                bits[i] = new
        return maybe
