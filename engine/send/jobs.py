"""A message as the dispatcher carries it (:class:`Job`), and what a provider is asked to send
for it (:class:`Messages`).

A job is made from a stored message (:meth:`Job.of`) when it is claimed, and lives until it
is settled: it remembers the route it is on, its attempts and same-key resends, whether this
run marked it ``sending`` and whether its last attempt's outcome is unknown. It is mutable
and private to one run; nothing outside :mod:`engine.send` keeps one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.campaign import Campaign
from engine.providers.base import NO_VARIABLES, OutboundMessage
from engine.store.records import VARIABLE_SEPARATOR, CampaignRecord, Outgoing
from engine.template import Template


@dataclass(slots=True)
class Job:
    """One claimed message on its way: where it goes, what it costs, how it went so far."""

    line: int
    phone: str
    text: str
    encoding: str
    segments: int
    provider: str
    route: str
    price_nanos: int
    cost_nanos: int
    plan_id: int
    attempts: int
    tried: frozenset[str] = frozenset()
    """Providers this run failed it over from (a set made only then: most jobs never are)."""
    first_sent_at: float | None = None
    fed: bool = False
    """Taken from its lane's backlog by the feeder, not yet given back by admission."""
    resends: int = 0
    values: list[str] = field(default_factory=list)
    """The row's value for each placeholder of the campaign message, in order."""
    marked: bool = False
    """Marked ``sending`` in the store during this run."""
    marked_for: str | None = None
    """The lane whose feeder marked it for the attempt to come (:mod:`engine.send.feeding`)."""
    unsure: bool = False
    """The last attempt's outcome is unknown."""

    def leaving(self, now: float) -> None:
        """Its request is about to leave: it is marked ``sending`` on disk by now."""
        self.attempts += 1
        self.marked = True
        self.marked_for = None
        if self.first_sent_at is None:
            self.first_sent_at = now

    @classmethod
    def of(cls, row: Outgoing, template: Template) -> Job:
        """The job of a stored message; its text is rendered from its variables unless the
        planner stored it (:func:`engine.plan.planner.plan_rows`)."""
        values = row.variables.split(VARIABLE_SEPARATOR) if row.variables else []
        text = row.text if row.text is not None else template.join(values)
        return cls(row.line, row.phone, text, row.encoding, row.segments, row.provider,
                   row.route or "", row.price_nanos, row.cost_nanos, row.plan_id, row.attempts,
                   first_sent_at=row.updated_at if row.state == "unknown" else None,
                   values=values)


def key_prefix(record: CampaignRecord) -> str:
    """The start of every idempotency key of *record*'s messages; a key is this and the line,
    the same in every run of the same plan."""
    return f"{record.name}-{record.fingerprint}-"


class Messages:
    """Builds what a provider is asked to send for a job: the dispatcher's one way to do so,
    public so that the benches send exactly what a run sends.

    *prefix* starts each idempotency key (:func:`key_prefix`; another prefix makes keys a
    provider has not seen)."""

    __slots__ = ("campaign", "prefix")

    def __init__(self, campaign: Campaign, prefix: str) -> None:
        self.campaign = campaign
        self.prefix = prefix

    def build(self, job: Job, bulk: bool = False) -> OutboundMessage:
        """The message of *job*. The template and the row's variables go only to a bulk
        provider (*bulk*), the one kind of API that uses them."""
        key = f"{self.prefix}{job.line}"
        encoding: Literal["GSM-7", "UCS-2"] = "UCS-2" if job.encoding == "UCS-2" else "GSM-7"
        if not bulk:
            return OutboundMessage(key, job.phone, job.text, self.campaign.sender, encoding,
                                   job.segments, job.route)
        message = self.campaign.message
        fields, values = message.fields, job.values
        return OutboundMessage(
            key, job.phone, job.text, self.campaign.sender, encoding, job.segments, job.route,
            message.source, dict(zip(fields, values, strict=True)) if len(values) == len(fields)
            else NO_VARIABLES)
