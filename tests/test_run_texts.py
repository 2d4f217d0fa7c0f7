"""Each recipient receives exactly their own text, though the planner stores only the values
of a valid row's placeholders and the text is rendered again when it is sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.store import VARIABLE_SEPARATOR
from tests.helpers import write_campaign
from tests.run_fixtures import run_and_read_texts

pytestmark = pytest.mark.anyio


async def test_per_message_provider_sends_each_recipients_own_text(tmp_path: Path) -> None:
    """Names with braces, quotes, non-GSM letters and the variable separator itself."""
    names = ["Ann", "{Bob}", 'Č"e', "Zoë 😀", f"Odd{VARIABLE_SEPARATOR}Name", "{0}"]
    rows = "".join(f'+42191234567{i},"{n.replace(chr(34), chr(34) * 2)}",{i * 7}\n'
                   for i, n in enumerate(names))
    campaign_path = write_campaign(tmp_path, "phone,name,points\n" + rows,
                                   message="Hi {name}, you have {points} points {{today}}")
    outcome, config, texts = await run_and_read_texts(tmp_path, campaign_path, ("smsvoip",))
    assert outcome.stats.accepted == len(names)
    assert texts == {f"42191234567{i}": f"Hi {n}, you have {i * 7} points {{today}}"
                     for i, n in enumerate(names)}
    with sqlite3.connect(config.database) as db:
        stored = dict(db.execute("SELECT line, text FROM messages ORDER BY line").fetchall())
    assert [line for line, text in stored.items() if text is not None] == [6], \
        "only the row whose value holds the separator keeps its text"
