"""State shared by the provider emulations: accounts, prices, faults, ledger and billing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from engine.sandbox.faults import FaultState, Violation
from engine.sandbox.ledger import Ledger, LedgerEntry
from engine.sandbox.messages import IdSource, MessageBook, SentMessage
from engine.sandbox.prices import PriceRow, PriceTable
from engine.sandbox.reports import Reporter, ReportMaker
from engine.sandbox.settings import ProviderAccount, SandboxSettings
from engine.sandbox.state import Loaded, Replay, SandboxState
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
        self.state: SandboxState | None = None
        self.replays: dict[str, list[Replay]] = {}
        """Idempotent answers a state file kept, by kind, for the provider modules to load."""

    def account(self, kind: str) -> ProviderAccount:
        return self.accounts[kind]

    def restore(self, state: SandboxState, loaded: Loaded) -> None:
        """Continue from a state file: its messages, id counter and wallets; what is billed
        from now on is written to it. Call before the provider modules are built."""
        self.state = state
        self.ids = IdSource(loaded.id_start)
        self.replays = loaded.replays
        for kind, messages in loaded.messages.items():
            book = self.books.get(kind)
            if book is not None:
                for message in messages:
                    book.add(message)
        for kind, balance in loaded.wallets.items():
            if kind in self.accounts:
                self.accounts[kind] = replace(self.accounts[kind], wallet=balance)

    def bill(
        self, kind: str, items: Sequence[Billing], report: ReportMaker | None = None
    ) -> list[SentMessage]:
        """Record messages as billed: message book, ledger (flushed), delivery schedule."""
        now = time.time()
        final_at = now + self.settings.delivery_delay_s
        share = self.faults[kind].faults.undelivered_share
        seed = self.settings.seed
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
                delivered=share <= 0.0 or fate(seed, kind, item.recipient, item.text) >= share,
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
        if self.state is not None:
            self.state.record(kind, sent)
        if report is not None:
            for message in sent:
                if message.callback_url is not None:
                    self.reporter.schedule(message, report)
        return sent


def fate(seed: int, kind: str, recipient: str, text: str) -> float:
    """A number in [0, 1) that is the same for the same message (provider, recipient, text)
    in every run and process: a message fails when it is below the undelivered share, so
    which ones fail does not depend on the order the sends arrive in."""
    digest = hashlib.blake2b(f"{seed}:{kind}:{recipient}:{text}".encode(), digest_size=8)
    return int.from_bytes(digest.digest()) / 2**64
