"""Each recipient receives exactly their own text, though the planner stores only the values
of a valid row's placeholders and the text is rendered again when it is sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.store.records import VARIABLE_SEPARATOR
from tests.helpers import write_campaign
from tests.run_fixtures import run_and_read_texts

pytestmark = pytest.mark.anyio


async def test_per_message_provider_sends_each_recipients_own_text(tmp_path: Path) -> None:
    """Names with braces, quotes and non-GSM letters are each sent as written; a name holding
    the variable separator (a control character) is rejected, never sent cut or merged."""
    names = ["Ann", "{Bob}", 'Č"e', "Zoë 😀", "{0}", f"Odd{VARIABLE_SEPARATOR}Name"]
    rows = "".join(f'+42191234567{i},"{n.replace(chr(34), chr(34) * 2)}",{i * 7}\n'
                   for i, n in enumerate(names))
    campaign_path = write_campaign(tmp_path, "phone,name,points\n" + rows,
                                   message="Hi {name}, you have {points} points {{today}}")
    outcome, config, texts = await run_and_read_texts(tmp_path, campaign_path, ("smsvoip",))
    sent = names[:-1]
    assert outcome.stats.accepted == len(sent)
    assert texts == {f"42191234567{i}": f"Hi {n}, you have {i * 7} points {{today}}"
                     for i, n in enumerate(sent)}
    with sqlite3.connect(config.database) as db:
        stored = db.execute("SELECT line, state, reason, detail, text FROM messages "
                            "ORDER BY line").fetchall()
    assert [line for line, *_, text in stored if text is not None] == []
    assert stored[-1][1:3] == ("rejected", "malformed_row") and "name" in stored[-1][3]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("Flash sale: 50% off today, %s and %d stay as written",
                     "Flash sale: 50% off today, %s and %d stay as written", id="no-placeholders"),
        pytest.param("{name}: 100% {{off}} %s", "NAME: 100% {off} %s", id="percent-signs"),
    ],
)
async def test_percent_signs_and_messages_without_placeholders(
        tmp_path: Path, message: str, expected: str) -> None:
    """A ``%`` in the template or in a value is literal text, and a message with no
    placeholders is sent as written, to every recipient."""
    names = ["Ann", "50%", "%s", "%(x)s"]
    rows = "".join(f"+42191234567{i},{n}\n" for i, n in enumerate(names))
    campaign_path = write_campaign(tmp_path, "phone,name\n" + rows, message=message)
    outcome, _, texts = await run_and_read_texts(tmp_path, campaign_path, ("smsvoip",))
    assert outcome.stats.accepted == len(names)
    assert texts == {f"42191234567{i}": expected.replace("NAME", n)
                     for i, n in enumerate(names)}
