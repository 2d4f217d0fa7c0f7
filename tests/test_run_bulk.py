"""Personalised messages to Skynoo go out through its bulk API with per-number variables."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

import engine.send.session
from tests.helpers import write_campaign
from tests.run_fixtures import run_and_read_texts

pytestmark = pytest.mark.anyio


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, paths: Counter[str]) -> None:
        self.inner, self.paths = inner, paths

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_personalised_campaign_uses_skynoo_batches_with_template_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 Indian numbers (Skynoo is cheapest there) with a name each: batch/create carries
    the template and every number's own name, and each recipient gets exactly their text."""
    paths: Counter[str] = Counter()
    real = engine.send.session.provider_transport
    monkeypatch.setattr(engine.send.session, "provider_transport",
                        lambda c, limiter: Counting(real(c, limiter), paths))
    rows = "".join(f"+91812345{i:04d},Name{i}\n" for i in range(40))
    campaign_path = write_campaign(tmp_path, "phone,name\n" + rows,
                                   message="Hi {name}, your code is ready")
    outcome, _, texts = await run_and_read_texts(tmp_path, campaign_path, ("skynoo",))
    assert outcome.stats.accepted == 40 and outcome.stopped is None
    assert paths["/skynoo/api/sms/v1/batch/create"] >= 1
    assert paths["/skynoo/api/sms/v1/send"] < 5
    assert texts == {f"91812345{i:04d}": f"Hi Name{i}, your code is ready" for i in range(40)}
