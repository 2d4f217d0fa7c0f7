"""State shared by the provider emulations: accounts, prices, faults, ledger and billing."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.sandbox.faults import FaultState, Violation
from engine.sandbox.ledger import Ledger, LedgerEntry
from engine.sandbox.messages import IdSource, MessageBook, SentMessage
from engine.sandbox.prices import PriceRow, PriceTable
from engine.sandbox.reports import Reporter, ReportMaker
from engine.sandbox.settings import ProviderAccount, SandboxSettings
from engine.sandbox.wire import Request, Response


class Refusal(Exception):
    """A request the provider refuses; its module renders it in the provider's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Billing:
    """One message about to be billed."""

    message_id: str
    recipient: str
    text: str
    sender: str | None
    segments: int
    price: PriceRow
    idempotency_key: str | None = None
    callback_url: str | None = None
    channel: str = "sms"
    task_id: int | None = None

    @property
    def cost(self) -> Decimal:
        return self.price.price * self.segments


class ProviderApi(Protocol):
    """What the server needs from one provider emulation."""

    @property
    def kind(self) -> str: ...

    def handle(self, request: Request, path: str) -> Response: ...

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response: ...

    def blocked(self) -> Response: ...


class Core:
    """Everything the provider modules share; they bill through :meth:`bill`."""

    def __init__(
        self, settings: SandboxSettings, prices: PriceTable, ledger: Ledger, reporter: Reporter
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.ledger = ledger
        self.reporter = reporter
        self.ids = IdSource()
        self.accounts = dict(settings.accounts)
        self.faults = {
            kind: FaultState(kind, account.faults, settings.seed)
            for kind, account in self.accounts.items()
        }
        self.books = {kind: MessageBook() for kind in self.accounts}
        self.violations: list[Violation] = []
        self.suspended: set[str] = set()
        self._fate = {
            kind: random.Random(f"{settings.seed}:{kind}:delivery") for kind in self.accounts
        }

    def account(self, kind: str) -> ProviderAccount:
        return self.accounts[kind]

    def bill(
        self, kind: str, items: Sequence[Billing], report: ReportMaker | None = None
    ) -> list[SentMessage]:
        """Record messages as billed: message book, ledger (flushed), delivery schedule."""
        now = time.time()
        final_at = now + self.settings.delivery_delay_s
        share = self.faults[kind].faults.undelivered_share
        fate = self._fate[kind]
        book = self.books[kind]
        sent: list[SentMessage] = []
        entries: list[LedgerEntry] = []
        for item in items:
            cost = item.cost
            message = SentMessage(
                kind=kind,
                id=item.message_id,
                recipient=item.recipient,
                text=item.text,
                sender=item.sender,
                segments=item.segments,
                cost=cost,
                currency=item.price.currency,
                created=now,
                final_at=final_at,
                delivered=not (share > 0.0 and fate.random() < share),
                callback_url=item.callback_url,
                channel=item.channel,
                task_id=item.task_id,
                country=item.price.country,
            )
            sent.append(message)
            book.add(message)
            entries.append(
                LedgerEntry(
                    provider=kind,
                    message_id=item.message_id,
                    recipient=item.recipient,
                    text=item.text,
                    sender=item.sender,
                    segments=item.segments,
                    price=cost,
                    currency=item.price.currency,
                    idempotency_key=item.idempotency_key,
                    time=now,
                )
            )
        self.ledger.record(entries)
        if report is not None:
            for message in sent:
                if message.callback_url is not None:
                    self.reporter.schedule(message, report)
        return sent
