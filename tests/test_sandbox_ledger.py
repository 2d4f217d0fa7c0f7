"""The ledger (memory, HTTP, JSON lines), settings, start-up errors and report delivery."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sandbox_fixtures import SKY, SMSVOIP, eventually, fast_settings, receiving

from engine.errors import SandboxError
from engine.sandbox import (
    DEFAULT_CREDENTIALS,
    KINDS,
    Faults,
    ProviderAccount,
    add_arguments,
    default_settings,
    faults_from_mapping,
    parse_fault_spec,
    running_sandbox,
    settings_from_args,
)

SEND = {"to": "+15551234567", "text": "Hi!"}


@pytest.mark.anyio
async def test_jsonl_line_is_flushed_before_the_answer(tmp_path: Path) -> None:
    """Each billed message is in the file when its answer arrives, with every field."""
    path = tmp_path / "nested" / "ledger.jsonl"
    async with (
        running_sandbox(fast_settings(ledger_path=path)) as sandbox,
        httpx.AsyncClient() as client,
    ):
        answer = await client.post(
            sandbox.base_url("smsvoip") + "/sms/send",
            json=SEND,
            headers={**SMSVOIP, "Idempotency-Key": "k-1"},
        )
        (line,) = path.read_text().splitlines()
        entry = json.loads(line)
        assert entry == {
            "provider": "smsvoip",
            "message_id": answer.json()["message_id"],
            "recipient": "+15551234567",
            "text": "Hi!",
            "sender": None,
            "segments": 1,
            "price": "0.0085",
            "currency": "EUR",
            "idempotency_key": "k-1",
            "time": entry["time"],
        }
        assert entry["time"].endswith("Z")
        await client.post(
            sandbox.base_url("skytelecom") + "/sms/send",
            json={"to": "12025550123", "message": "ok", "sender_id": "Shop"},
            headers=SKY,
        )
        assert len(path.read_text().splitlines()) == 2
        remote = (await client.get(sandbox.url + "/_sandbox/ledger")).json()
        assert remote["entries"] == [json.loads(x) for x in path.read_text().splitlines()]
    async with running_sandbox(fast_settings(ledger_path=path)) as sandbox:
        assert sandbox.ledger == []
    assert len(path.read_text().splitlines()) == 2


@pytest.mark.anyio
async def test_unreachable_callback_is_retried_then_dropped() -> None:
    """A receiver answering 500 gets each report a few times; the sandbox keeps serving."""
    async with receiving() as receiver:
        receiver.status = 500
        account = replace(DEFAULT_CREDENTIALS["smsvoip"], callback_url=receiver.url + "/x")
        async with (
            running_sandbox(fast_settings(accounts={"smsvoip": account})) as sandbox,
            httpx.AsyncClient(base_url=sandbox.base_url("smsvoip"), headers=SMSVOIP) as client,
        ):
            assert (await client.post("/sms/send", json=SEND)).status_code == 200
            await receiver.wait_for(3)
            assert (await client.post("/sms/send", json=SEND)).status_code == 200


@pytest.mark.anyio
async def test_port_in_use_is_a_sandbox_error() -> None:
    """A second sandbox on a taken port fails with SandboxError."""
    async with running_sandbox(fast_settings()) as sandbox:
        port = int(sandbox.url.rsplit(":", 1)[1])
        with pytest.raises(SandboxError, match="cannot listen"):
            async with running_sandbox(fast_settings(), port=port):
                pass


@pytest.mark.anyio
async def test_only_loopback_and_base_urls() -> None:
    """The sandbox listens on 127.0.0.1 and gives each kind its own prefix."""
    async with running_sandbox(fast_settings()) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert [sandbox.base_url(k) for k in KINDS] == [f"{sandbox.url}/{k}" for k in KINDS]
        with pytest.raises(SandboxError):
            sandbox.base_url("nope")
        async with httpx.AsyncClient() as client:
            assert (await client.get(sandbox.url + "/nope/x")).status_code == 404
            assert (await client.get(sandbox.url + "/_sandbox/nope")).status_code == 404

        async def ok() -> bool:
            return True

        await eventually(ok)


def test_default_settings_merge_accounts() -> None:
    """``accounts=`` replaces only the kinds it names."""
    account = ProviderAccount(api_key="sky_other", wallet=Decimal("5"))
    settings = default_settings(accounts={"skytelecom": account}, seed=3)
    assert settings.accounts["skytelecom"] is account
    assert settings.accounts["smsvoip"] == DEFAULT_CREDENTIALS["smsvoip"]
    assert set(settings.accounts) == set(KINDS) and settings.seed == 3


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"accounts": {"nope": ProviderAccount()}}, id="unknown-kind"),
        pytest.param(
            {"accounts": {"voipex": ProviderAccount(callback_url="http://10.0.0.1/x")}},
            id="remote-callback",
        ),
        pytest.param(
            {"accounts": {"voipex": ProviderAccount(faults=Faults(error_status=404))}},
            id="error-status",
        ),
        pytest.param(
            {"accounts": {"voipex": ProviderAccount(faults=Faults(throttle_share=2.0))}},
            id="share",
        ),
        pytest.param({"delivery_delay_s": -1.0}, id="delay"),
        pytest.param({"bogus": 1}, id="unknown-field"),
    ],
)
def test_bad_settings_are_sandbox_errors(overrides: dict[str, object]) -> None:
    """Settings the sandbox cannot honour raise SandboxError naming the problem."""
    with pytest.raises(SandboxError):
        default_settings(**overrides)


def test_fault_spec_parsing() -> None:
    """``KIND:name=value,...`` and ``all:`` become Faults; bad specs are SandboxErrors."""
    kinds, faults = parse_fault_spec("smsvoip:throttle_every=10,latency_ms=50,rate_limit=120/60")
    assert kinds == ("smsvoip",)
    assert faults == Faults(throttle_every=10, latency_ms=50.0, rate_limit=(120, 60.0))
    assert parse_fault_spec("all:error_share=0.1")[0] == KINDS
    assert faults_from_mapping("telekom", {"rate_limit": [5, 1]}).rate_limit == (5, 1.0)
    for bad in (
        "smsvoip",
        "nope:x=1",
        "smsvoip:throttle_every",
        "smsvoip:warp=9",
        "smsvoip:throttle_every=x",
        "smsvoip:rate_limit=5",
    ):
        with pytest.raises(SandboxError):
            parse_fault_spec(bad)


def test_settings_from_args(tmp_path: Path) -> None:
    """The shared argparse options build the same settings ``dispatch sandbox`` will use."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "0",
            "--faults",
            "smsvoip:throttle_every=10,latency_ms=50",
            "--faults",
            "all:undelivered_share=0.5",
            "--ledger",
            str(tmp_path / "l.jsonl"),
            "--callback",
            "telekom=http://127.0.0.1:9/dsn",
            "--delivery-delay",
            "0.5",
        ]
    )
    settings = settings_from_args(args)
    assert settings.accounts["smsvoip"].faults == Faults(undelivered_share=0.5)
    assert settings.accounts["telekom"].callback_url == "http://127.0.0.1:9/dsn"
    assert settings.ledger_path == tmp_path / "l.jsonl"
    assert settings.delivery_delay_s == 0.5
    first = parser.parse_args(["--faults", "smsvoip:throttle_every=10,latency_ms=50"])
    assert settings_from_args(first).accounts["smsvoip"].faults.throttle_every == 10
    with pytest.raises(SandboxError):
        settings_from_args(parser.parse_args(["--callback", "telekom=http://example.com/"]))
