"""The Provider protocol, the values that cross it, and the one status vocabulary.

Everything a provider says is classified here, at the adapter boundary, into an
:class:`Outcome`, so that the dispatcher decides what may happen next without knowing HTTP:

==================  ===========================================================  ==========
outcome             examples                                                     next
==================  ===========================================================  ==========
ACCEPTED            2xx with a message id                                         checkpoint
THROTTLED           429 (with ``Retry-After``)                                    pause lane
NOT_PROCESSED       503, connection refused, connect timeout, reset before send   retry
UNKNOWN             read timeout, dropped after write, 500/502/504, bad 2xx body  settle
REFUSED_MESSAGE     400, a provider code about the number or text                 failover?
REFUSED_ACCOUNT     401, 403, empty wallet, IP not allowed                        stop lane
==================  ===========================================================  ==========

No ``httpx`` type or exception leaves a provider module.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, NamedTuple, Protocol, runtime_checkable

from engine.routing import RateRow


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    THROTTLED = "throttled"
    NOT_PROCESSED = "not_processed"
    UNKNOWN = "unknown"
    REFUSED_MESSAGE = "refused_message"
    REFUSED_ACCOUNT = "refused_account"


NO_VARIABLES: Final[Mapping[str, str]] = MappingProxyType({})


class OutboundMessage(NamedTuple):
    """One SMS as the engine asks a provider to send it (a tuple: one is made per message
    sent, and a frozen dataclass of this size costs four times as much to make)."""

    key: str
    """Stable per campaign and message, across retries and restarts: the idempotency key."""
    to: str
    """E.164 with ``+``; each adapter writes it the way its provider wants."""
    text: str
    sender: str
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int
    route: str = ""
    """The provider's route id from the rate table (``""`` lets the provider choose)."""
    template: str = ""
    """The campaign message with ``{column}`` placeholders, for bulk APIs with variables."""
    variables: Mapping[str, str] = NO_VARIABLES
    """The row's value for each placeholder of :attr:`template`."""


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    segments: int | None = None
    cost: Decimal | None = None
    """What the provider says it charged, in :attr:`currency`; ``None`` when it does not say."""
    currency: str | None = None
    retry_after_s: float | None = None
    code: str = ""
    """The provider's own status or error code (``SESSION_NOT_FOUND``, ``"400"``, ``429``)."""
    detail: str = ""
    """A short human explanation; never holds a credential."""
    try_other_route: bool = False
    """For REFUSED_MESSAGE: the refusal is about this route or destination, not the text."""
    balance: Decimal | None = None
    """The account balance after this send, where the provider reports it."""

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


DeliveryState = Literal["accepted", "delivered", "undelivered", "expired", "unknown"]


SentBetween = tuple[datetime, datetime]
"""The earliest and the latest acceptance of the messages a poll asks about (UTC)."""


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    provider_message_id: str
    state: DeliveryState
    provider_status: str
    """The provider's own word, kept beside ours."""
    reason: str = ""
    at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in ("delivered", "undelivered", "expired")


@dataclass(frozen=True, slots=True)
class Readiness:
    """What preflight found: a provider that is not ``ok`` is left out of routing."""

    provider: str
    ok: bool
    problems: tuple[str, ...] = ()
    balance: Decimal | None = None
    currency: str | None = None


STATUS_WORDS: Final[Mapping[str, DeliveryState]] = MappingProxyType({
    **dict.fromkeys(("sent", "pending", "queued", "sending", "send", "unsent", "scheduled",
                     "accepted", "processing", "in_group", "submitted"), "accepted"),
    **dict.fromkeys(("delivered", "read"), "delivered"),
    **dict.fromkeys(("failed", "undeliverable", "undelivered", "denied", "rejected",
                     "deleted"), "undelivered"),
    "expired": "expired",
    **dict.fromkeys(("unknown", "error"), "unknown"),
})
"""Every provider's status word (case-insensitive) in the engine's vocabulary; the
provider's README has the table this follows. ``ERROR`` is ``unknown`` because Telekom
keeps retrying it for an hour."""


def delivery_state(word: str) -> DeliveryState:
    return STATUS_WORDS.get(word.strip().lower(), "unknown")


@runtime_checkable
class Provider(Protocol):
    """One provider account. Adapters are async context managers owning one HTTP client."""

    name: str
    kind: str
    supports_idempotency: bool
    """True where a resend with the same :attr:`OutboundMessage.key` is never billed twice."""
    max_batch: int
    """How many messages one :meth:`send_batch` call takes (1: no bulk API)."""

    async def __aenter__(self) -> Provider: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; never raises for a provider or network failure."""
        ...

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send up to :attr:`max_batch` messages; one result per message, in order."""
        ...

    async def fetch_rates(self) -> list[RateRow]:
        """The provider's live price list as prefix rows; ``[]`` where it publishes none."""
        ...

    async def check(self) -> Readiness:
        """Preflight: authenticate and check the sender, without sending anything."""
        ...

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        """Find a message whose send outcome is unknown in the provider's logs or history.

        ACCEPTED (with its id) when found, ``None`` when the provider has no record of it,
        NOT_PROCESSED/REFUSED_ACCOUNT when the lookup itself failed. Only called where
        :attr:`can_lookup` is true.
        """
        ...

    @property
    def can_lookup(self) -> bool: ...

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        """Delivery state of sent messages, for providers that are asked, not told.

        *sent_between*: when the messages asked about were accepted (the earliest and the
        latest), which a provider whose records are read by time (Voipex history, Sky
        Telecom logs) uses to read only that span."""
        ...
