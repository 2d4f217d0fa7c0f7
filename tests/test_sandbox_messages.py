"""The sandbox's message book."""

from __future__ import annotations

from decimal import Decimal

from engine.sandbox.messages import MessageBook, SentMessage


def test_message_book_finds_a_creation_window_by_bisection() -> None:
    """``created_between`` takes [start, end) in billing order, either bound open."""
    book = MessageBook()
    for i, created in enumerate((10.0, 11.0, 11.0, 12.0, 13.0)):
        book.add(SentMessage(kind="voipex", id=str(i), recipient="1", text="t", sender=None,
                             segments=1, cost=Decimal("0.01"), currency="EUR",
                             created=created, final_at=created, delivered=True))

    def ids(start: float | None, end: float | None) -> list[str]:
        return [m.id for m in book.created_between(start, end)]

    assert ids(11.0, 13.0) == ["1", "2", "3"]
    assert ids(None, 11.0) == ["0"]
    assert ids(12.5, None) == ["4"]
    assert ids(None, None) == ["0", "1", "2", "3", "4"]
    assert ids(14.0, None) == [] and ids(11.5, 11.6) == []
