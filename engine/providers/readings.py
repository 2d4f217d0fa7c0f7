"""How adapters read answers whose fields a provider document names but does not shape.

The adapters' counterpart of :mod:`engine.sandbox.choices`: where a document says *what* an
answer holds but not its envelope or its exact keys, every faithful reading is accepted, and
the readings are written down here, per document. Where a document states a shape exactly,
the adapter reads that shape and nothing looser (listed at the end, with why).

Keys are compared folded (:func:`fold`): lower case without ``_``, ``-``, ``.`` or spaces, so
``iso_code``, ``isoCode`` and ``ISO-Code`` are one name; each list below holds folded names,
preferred first. Amounts are read from the exact JSON text (:func:`loads_exact`) or from
strings into ``Decimal``, never through a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, runtime_checkable

from engine.routing import RateRow

ENVELOPE_DEPTH: Final = 3
"""How many objects deep a list of entries is looked for (``{"data": {"rates": [...]}}``
is two)."""
UNUSABLE_NAMED: Final = 3
"""How many unusable entries a problem line names; the rest are counted."""
KEYS_NAMED: Final = 6
"""How many of an unusable entry's keys its description names."""

# --- 001 SMS & Voice Platform: GET /api/v1/rates ------------------------------------------
# "Returns country, ISO code, SMS, voice, currency, and route label": names, no shape. The
# entries are a bare list, a list under one of these keys (at any of ENVELOPE_DEPTH levels,
# ``{"data": {"rates": [...]}}``), the only list in the object, or an object keyed by ISO
# code or country name (``{"rates": {"GB": {"sms": ...}}}``, the key read as the country).
SMSVOIP_RATE_LISTS: Final = ("rates", "data", "items", "results", "sms", "prices", "list",
                              "result", "response", "payload")
# ISO code: two letters. A value of digits (``"44"``, ``"+44"``, ``44``) under a
# ``country_code`` name is read as a calling code.
SMSVOIP_ISO: Final = ("isocode", "iso", "iso2", "isoalpha2", "alpha2", "countryiso",
                      "countryisocode", "countrycode", "code")
# Country: an English name or an ISO code, where no ISO field is given.
SMSVOIP_COUNTRY: Final = ("country", "countryname", "name", "destination", "key")
# Calling code, where neither an ISO code nor a country is given.
SMSVOIP_PREFIX: Final = ("prefix", "callingcode", "dialcode", "dialingcode")
# SMS price per segment: a number or a numeric string, or an object holding one under
# PRICE_INSIDE (``"sms": {"price": "0.03", "currency": "EUR"}``).
SMSVOIP_SMS_PRICE: Final = ("sms", "smsprice", "pricesms", "smsrate", "price", "rate")
PRICE_INSIDE: Final = ("price", "amount", "value", "rate")
# Currency per entry; else the envelope's own ``currency``; else the provider's configured
# currency (``[providers.X] currency``), which is the account's.
SMSVOIP_CURRENCY: Final = ("currency", "currencycode", "smscurrency", "curr")
SMSVOIP_ROUTE: Final = ("route", "routelabel", "label", "routename", "routeid")

# --- 002 Voipex: GET /SMS?startTime&endTime (history) -------------------------------------
# "All sent and received SMS can be read by GET /SMS": no shape at all. Records are read as
# the webhook's (``id, from, to, text, direction, state, createdAt``), with these variants;
# the list is bare or under one of these keys (or the only list in the object).
VOIPEX_HISTORY_LISTS: Final = ("data", "items", "results", "sms", "messages", "content",
                               "records", "history")
VOIPEX_ID: Final = ("id", "smsid", "messageid", "uuid")  # a string, as the send answers
VOIPEX_FROM: Final = ("from", "sender", "source")
VOIPEX_TO: Final = ("to", "recipient", "destination", "number")
VOIPEX_TEXT: Final = ("text", "message", "body")
VOIPEX_DIRECTION: Final = ("direction", "type")
VOIPEX_STATE: Final = ("state", "status", "deliverystate")
VOIPEX_CREATED: Final = ("createdat", "created", "createdtime", "timestamp", "date")
VOIPEX_OUT_WORDS: Final = frozenset({"out", "outbound", "outgoing", "mt", "sent"})
VOIPEX_IN_WORDS: Final = frozenset({"in", "inbound", "incoming", "mo", "received"})

# --- 003 Telekom: POST /check_message -----------------------------------------------------
# The JSON example has ``status``, ``code`` and ``deliveryDateTime`` beside ``result``; the
# XML example nests them in ``message``. Either is read (top level first). The status word
# alone is read where ``code`` is missing. ``deliveryDateTime`` is "timestamp format or an
# empty string": ``YYYY-MM-DD HH:MM:SS`` (in the configured zone), ISO-8601, or epoch seconds.
TELEKOM_CHECK_NESTED: Final = "message"

# --- stated exactly: read as stated -------------------------------------------------------
# 000 Sky Telecom available-routes: the example gives ``gamma_by_country`` (English country
# name -> ``[{option_id, name, price}]``) and ``gamma_options`` (``[{option_id, name,
# country, price}]``). Both are read (the flat list where the map is missing); only the
# price is read loosely (a numeric string too). "Other" is the document's own bucket of
# channels for no one country: ignored, not unusable.
SKY_NOT_A_COUNTRY: Final = frozenset({"other", "others"})
# 000 Sky Telecom SMS logs: ``{data: [{id, date, recipient, ..., status}], page, limit,
# has_more}`` as in the example. 004 Skynoo getStatus: ``{code, message, data: [{sid,
# status, errorCode}]}`` as in its tables.


def fold(key: str) -> str:
    """``iso_code``, ``isoCode``, ``ISO-Code`` -> ``isocode``."""
    return "".join(c for c in key.lower() if c not in "_-. ")


def folded(entry: Mapping[str, Any]) -> dict[str, Any]:
    """*entry* with folded keys (the first of two keys that fold alike wins)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        out.setdefault(fold(str(key)), value)
    return out


def pick(entry: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The value of the first of *names* (folded) that *entry* (folded) has and is not null."""
    for name in names:
        value = entry.get(name)
        if value is not None and value != "":
            return value
    return None


def loads_exact(content: bytes) -> Any:
    """JSON with every non-integer number as an exact ``Decimal``; ``None`` if not JSON."""
    try:
        return json.loads(content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def price_of(value: object) -> Decimal | None:
    """A non-negative finite amount from a number, a numeric string or an object holding one
    under :data:`PRICE_INSIDE`; ``None`` otherwise. A float is read by its shortest repr."""
    if isinstance(value, Mapping):
        value = pick(folded(value), PRICE_INSIDE)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() and result >= 0 else None


def entries_of(data: object, list_keys: Sequence[str], depth: int = ENVELOPE_DEPTH
               ) -> list[Any] | None:
    """The entries of an answer: *data* itself if a list; else the list under the first of
    *list_keys* (folded); else the only list-valued key; else the entries found the same way
    under the first of *list_keys* holding an object (up to *depth* objects deep); else, for
    an object of objects, its values, each given its key as ``key``. ``None`` where there
    is no list."""
    if isinstance(data, list):
        return data
    if not isinstance(data, Mapping) or not data or depth <= 0:
        return None
    by_name = folded(data)
    for name in list_keys:
        if isinstance(by_name.get(name), list):
            return list(by_name[name])
    lists = [v for v in data.values() if isinstance(v, list)]
    if len(lists) == 1:
        return lists[0]
    for name in list_keys:
        value = by_name.get(name)
        if isinstance(value, Mapping):
            found = entries_of(value, list_keys, depth - 1)
            if found is not None:
                return found
    if all(isinstance(v, Mapping) for v in data.values()):
        return [{"key": str(k), **v} for k, v in data.items()]
    return None


def describe_keys(entry: object) -> str:
    """``keys iso, foo`` for an object, else its JSON type: what an unusable entry held."""
    if not isinstance(entry, Mapping):
        return f"a {type(entry).__name__}, not an object"
    names = [str(k) for k in entry][:KEYS_NAMED]
    more = len(entry) - len(names)
    return "keys " + (", ".join(names) or "none") + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class RateReading:
    """What a provider's live price list yielded: rows, and every entry that did not.

    *unusable* names each entry that could not be read (``no price in entry 3: keys iso,
    foo``); *ignored* names entries read but not routable by prefix (a country sharing a
    calling code with another, a bucket that is no country).
    """

    provider: str
    rows: tuple[RateRow, ...]
    entries: int
    unusable: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def usable(self) -> int:
        return self.entries - len(self.unusable)

    @property
    def problem(self) -> str:
        """Why this reading fails a rates preflight (``""``: it does not): nothing usable,
        or any entry unusable."""
        if not self.entries:
            return "the provider listed no rates"
        if self.rows and not self.unusable:
            return ""
        named = "; ".join(self.unusable[:UNUSABLE_NAMED])
        more = len(self.unusable) - UNUSABLE_NAMED
        named += f"; and {more} more" if more > 0 else ""
        if not self.rows:
            why = named or "; ".join(self.ignored[:UNUSABLE_NAMED]) or "nothing routable"
            return f"0 usable of {self.entries} entries ({why})"
        return f"{len(self.unusable)} of {self.entries} entries unusable ({named})"


@runtime_checkable
class PublishesRates(Protocol):
    """An adapter with a live price list, read with every entry accounted for."""

    async def read_rates(self) -> RateReading:
        """The price list as read; raises ``ProviderError`` when none could be had."""
        ...
