"""The webhook receiver on 127.0.0.1: signed, tokened, and what every bad request changes
(nothing)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.config import ProviderConfig
from engine.delivery.reports import endpoints, parse_telekom, parse_voipex, verify_signature
from engine.delivery.webhooks import Receiver, describe, running_receiver
from engine.sandbox import signature
from engine.store.delivery_records import DeliveryReport
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.store import Store

pytestmark = pytest.mark.anyio

SECRET = "whsec_test"
PROVIDERS = (
    ProviderConfig("smsvoip", "smsvoip", "sandbox", api_key="k", webhook_secret=SECRET),
    ProviderConfig("telekom", "telekom", "sandbox", token="t"),
    ProviderConfig("voipex", "voipex", "sandbox", token="t", sender="+420777888999"),
)
MESSAGES = (("smsvoip", "msg_1"), ("smsvoip", "msg_2"), ("telekom", "1001"), ("voipex", "v-1"))


@dataclass
class Harness:
    db: Path
    receiver: Receiver
    urls: dict[str, str]
    client: httpx.AsyncClient
    store: DeliveryStore

    def rows(self) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                "SELECT provider_message_id, state, delivery_state, delivery_status, "
                "delivered_at, delivery_reason FROM messages ORDER BY line").fetchall()

    def reports(self) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT * FROM delivery_reports ORDER BY 1, 2, 3").fetchall()

    def state(self, pmid: str) -> tuple[object, ...]:
        return next(r for r in self.rows() if r[0] == pmid)

    async def smsvoip(self, payload: object, *, t: int | None = None,
                      header: str | None = None, secret: str = SECRET) -> int:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sig = header if header is not None else signature(
            secret, int(time.time()) if t is None else t, body)
        response = await self.client.post(self.urls["smsvoip"], content=body,
                                          headers={"X-Signature": sig} if sig else {})
        return response.status_code

    async def post(self, provider: str, payload: object) -> int:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return (await self.client.post(self.urls[provider], content=body)).status_code


async def seed(store: Store) -> None:
    record = await store.open_campaign(name="c", fingerprint="f", path=Path("c.toml"),
                                       currency="EUR", plans=[])
    async with store.transaction() as db:
        await db.executemany(
            "INSERT INTO messages (campaign_id, line, phone, country, state, provider, "
            "provider_message_id, cost_nanos, segments, updated_at) "
            "VALUES (?, ?, '+421900000000', 'SK', 'accepted', ?, ?, 1000, 1, ?)",
            [(record.id, i, p, m, time.time() - 5) for i, (p, m) in enumerate(MESSAGES, 1)])


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    db = tmp_path / "d.db"
    async with Store.open(db) as store:
        await seed(store)
        deliveries = DeliveryStore(store)
        found = endpoints(PROVIDERS, await deliveries.webhook_key())
        async with running_receiver(deliveries, found) as receiver, \
                httpx.AsyncClient(timeout=10) as client:
            yield Harness(db, receiver, describe(receiver), client, deliveries)


def report(message_id: str = "msg_1", status: str = "delivered") -> dict[str, object]:
    return {"event": "delivery_report", "message_id": message_id, "status": status,
            "delivered_at": "2026-01-12T20:15:00Z", "cost": 0.006}


async def test_a_signed_report_is_applied_and_the_same_report_again_changes_nothing(
        tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert await h.smsvoip(report()) == 200
        first = (h.rows(), h.reports())
        assert h.state("msg_1")[1:4] == ("delivered", "delivered", "delivered")
        assert await h.smsvoip(report()) == 200  # the provider's retry, freshly signed
        assert await h.smsvoip(report(status="undelivered")) == 200  # the first final wins
        assert h.rows() == first[0]
        assert len(h.reports()) == len(first[1]) + 1


async def test_forged_stale_replayed_and_unsigned_reports_are_401_and_change_nothing(
        tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        before = (h.rows(), h.reports())
        body = json.dumps(report()).encode()
        old = int(time.time()) - 301
        stale_header = signature(SECRET, old, body)
        cases = {
            "forged v1": await h.smsvoip(report(), secret="whsec_guess"),
            "stale t": await h.smsvoip(report(), t=old),
            "replayed header, stale t": await h.smsvoip(body, header=stale_header),
            "future t": await h.smsvoip(report(), t=int(time.time()) + 301),
            "no signature": await h.smsvoip(report(), header=""),
            "garbage header": await h.smsvoip(report(), header="nonsense"),
            "bad t": await h.smsvoip(report(), header="t=abc,v1=00"),
            "no v1": await h.smsvoip(report(), header=f"t={int(time.time())}"),
            "other body": await h.smsvoip(
                json.dumps(report(status="undelivered")).encode(),
                header=signature(SECRET, int(time.time()), body)),
            "wrong telekom token": (await h.client.post(
                h.urls["telekom"].rsplit("/", 1)[0] + "/0" * 16, json={})).status_code,
            "no token": (await h.client.post(h.urls["voipex"].rsplit("/", 1)[0],
                                             json={})).status_code,
        }
        assert set(cases.values()) == {401}, cases
        assert (h.rows(), h.reports()) == before


async def test_malformed_reports_are_400_and_change_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        before = (h.rows(), h.reports())
        cases = {
            "not json": await h.smsvoip(b"{not json"),
            "not an object": await h.smsvoip([1, 2]),
            "no message_id": await h.smsvoip({"event": "delivery_report", "status": "x"}),
            "no status": await h.smsvoip({"event": "delivery_report", "message_id": "msg_1"}),
            "telekom not json": await h.post("telekom", b"\xff\xfe"),
            "telekom no delivery": await h.post("telekom", {"messageId": 1001, "type": "dsn"}),
            "telekom no id": await h.post("telekom", {"delivery": {"status": "DELIVERED"}}),
            "voipex no state": await h.post("voipex", {"id": "v-1", "direction": "OUT"}),
            "voipex no direction": await h.post("voipex", {"id": "v-1", "state": "DELIVERED"}),
        }
        assert set(cases.values()) == {400}, cases
        assert (await h.client.get(h.urls["voipex"])).status_code == 405
        assert (await h.client.post(h.receiver.url + "/nowhere", json={})).status_code == 404
        assert (h.rows(), h.reports()) == before


async def test_telekom_and_voipex_reports_and_unrelated_callbacks(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        dsn = {"delivery": {"status": "UNDELIVERABLE"}, "messageId": 1001, "channel": "sms",
               "messageParts": 3, "type": "dsn", "timestamp": "2026-01-12T20:15:00.000Z"}
        assert await h.post("telekom", dsn) == 200
        assert await h.post("telekom", {**dsn, "type": "postback"}) == 200
        assert await h.post("voipex", {"id": "v-1", "from": "+1", "to": "+2", "text": "hi",
                                       "direction": "IN", "state": "DELIVERED"}) == 200
        assert h.state("v-1")[1] == "accepted"
        assert await h.post("voipex", {"id": "v-1", "from": "+1", "to": "+2", "text": "hi",
                                       "direction": "OUT", "state": "DELIVERED",
                                       "createdAt": "2026-01-12T20:15:00Z"}) == 200
        assert h.state("1001")[1:] == ("undelivered", "undelivered", "UNDELIVERABLE", None,
                                       "UNDELIVERABLE")
        assert h.state("v-1")[1:4] == ("delivered", "delivered", "DELIVERED")
        assert h.receiver.stats.ignored == 2


async def test_a_report_before_its_message_is_kept_and_matched_later(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert await h.smsvoip(report("msg_later", "undelivered")) == 200
        assert len(h.reports()) == 1 and h.receiver.stats.unmatched == 1
        with sqlite3.connect(h.db) as conn:
            conn.execute("UPDATE messages SET provider_message_id = 'msg_later' "
                         "WHERE provider_message_id = 'msg_2'")
        result = await h.store.record_reports([])
        assert result.unmatched == 0
        assert h.state("msg_later")[1:] == ("undelivered", "undelivered", "undelivered", None,
                                            "undelivered")


async def test_expired_is_undelivered_with_reason_expired_and_progress_never_undoes_final(
        tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        status = parse_telekom(json.dumps({"delivery": {"status": "EXPIRED"},
                                           "messageId": 1001}).encode())
        assert status is not None and status.state == "expired"
        now = time.time()
        await h.store.record_reports([
            DeliveryReport("telekom", "1001", "expired", "EXPIRED", "EXPIRED", None, now),
            DeliveryReport("telekom", "1001", "accepted", "SENT", "", None, now + 1)])
        assert h.state("1001")[1:3] == ("undelivered", "expired")
        assert h.state("1001")[5] == "expired"


def test_signature_checks() -> None:
    body = b'{"a":1}'
    now = 1_800_000_000
    good = signature(SECRET, now, body)
    assert verify_signature(good, body, SECRET, now=now)
    assert verify_signature(f"{good},v1=00", body, SECRET, now=now + 300)
    assert not verify_signature(good, body, SECRET, now=now + 301)
    assert not verify_signature(good, body + b" ", SECRET, now=now)
    assert not verify_signature(good, body, "", now=now)
    assert not verify_signature(good.replace("v1=", "v1=é"), body, SECRET, now=now)
    assert parse_voipex(b'{"id": "x", "direction": "OUT", "state": "FAILED"}') is not None
