"""Every decision the sandbox makes where a provider document is silent, in one place.

Each constant says, on the line above it, which document was silent about what. Adapters
that need one of these values make it configurable; the sandbox emulates exactly this.
Documents: 000 Sky Telecom, 001 SMS & Voice Platform (``smsvoip``), 002 Voipex,
003 Telekom, 004 Skynoo (``/work/shared/providers``).
"""

from __future__ import annotations

from typing import Final

# --- all documents -------------------------------------------------------------------------

# All: silent on how a sandbox maps a base URL. ``Sandbox.base_url(kind)`` stands for the
# documented base URL (000 ``https://skytelecom.io/api``, 001 ``.../api/v1``, 003
# ``.../json``, 002 and 004 the bare host). The path part of that base may also be repeated
# after the prefix, so ``/skytelecom/sms/send`` and ``/skytelecom/api/sms/send`` both work.
BASE_PATHS: Final = {
    "skytelecom": "/api",
    "smsvoip": "/api/v1",
    "voipex": "",
    "telekom": "/json",
    "skynoo": "",
}

# All: silent on request size limits. Larger bodies are refused with HTTP 413.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024

# All: silent on the timing of delivery. Every message reaches its final state
# ``delivery_delay_s`` after it was billed; before that it is in its "sent" state.
# All: silent on how many messages fail. A share of them (the ``undelivered_share`` fault,
# 0 unless set) ends in the provider's failure word: 000 ``failed``, 001 ``undelivered``,
# 002 ``FAILED``, 003 ``UNDELIVERABLE``, 004 ``UNDELIVERED`` with errorCode ``E66``. Which
# ones is decided per message (a hash of seed, provider, recipient and text), not by the
# order sends arrive in. The sandbox that ``dispatch`` starts for ``base_url = "sandbox"``
# fails this share by default, so that every report shows both outcomes:
BUILTIN_UNDELIVERED_SHARE: Final = 0.04
# All (README): ``Retry-After`` on a 429 is written in whole seconds when whole, else as a
# decimal (``0.05``), so that tests can use millisecond faults.
RETRY_AFTER_DECIMALS: Final = 3

# All: silent on what counts toward injected faults. Throttle, error, reset and latency count
# every request to a provider's API (sends, lookups, auth); drop-after-accept counts only
# requests that bill. A request refused by the rate limit counts for no other fault, and only
# admitted requests occupy the sliding window. ``set_faults`` restarts every counter.
# All: silent on added latency. Each request waits latency_ms + uniform(-jitter, +jitter) ms,
# never below zero, before it is processed.
# All: a request whose client disconnects while it waits is still processed (and billed), as
# a provider would after a client-side read timeout.

# All: silent on account suspension. ``Sandbox.suspend(kind)`` (or
# ``POST /_sandbox/suspend/{kind}``) makes every request of that provider answer with its
# "account blocked" error: 000 HTTP 403, 001 HTTP 403, 002 HTTP 403, 003 ``IP_NOT_ALLOWED``,
# 004 code "403".

# All: silent on delivery report retries. A report that cannot be posted (connection error,
# timeout, HTTP 5xx) is retried with backoff, then dropped with a ``sandbox.callback_dropped``
# log line; any answer below 500 counts as received. Reports only go to 127.0.0.1/localhost.
CALLBACK_ATTEMPTS: Final = 3
CALLBACK_BACKOFF_S: Final = 0.1
CALLBACK_TIMEOUT_S: Final = 5.0
CALLBACK_WORKERS: Final = 8

# Sandbox's own: the JSON-lines ledger writes price as a decimal string (exact), time as
# ISO-8601 UTC with milliseconds, ``message_id`` and ``currency`` besides the asked fields.
# Lines are flushed to the OS before the answer, not fsynced: they survive the process being
# killed, not the machine losing power. ``/_sandbox/reset`` empties the in-memory ledger and
# the violations; the file keeps its lines. ``/_sandbox/ledger`` answers
# ``{"count", "entries"}`` and ``/_sandbox/violations`` ``{"count", "violations"}``.

# --- 000 Sky Telecom -----------------------------------------------------------------------

# 000: silent on the SMS logs path. It is ``GET /sms/logs``.
SKY_LOGS_PATH: Final = "/sms/logs"
# 000: silent on error bodies and statuses. Errors are
# ``{"status": "error", "code": ..., "message": ...}`` with HTTP 400 (validation, unknown
# route, no price for the destination), 401 (key), 402 (wallet too low), 403, 404, 429, 5xx.
SKY_WALLET_STATUS: Final = 402
# 000: silent on the ``routes`` list of available-routes. Each is ``{"option_id", "name"}``
# for the public codes below; sending with a public code prices the destination's cheapest
# GAMMA channel (the sandbox's price table has only GAMMA channels).
SKY_PUBLIC_ROUTES: Final = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    *(f"epsilon_{n}" for n in range(1, 14)),
)
# 000: silent on the shape of ``GET /sms/routes?numbers=``. It answers
# ``{"data": [{"number", "country", "routes": [...public], "gamma": [{"option_id", "name",
# "price"}]}]}``, one entry per comma-separated number; a number without a price has empty
# lists and ``country: null``.
# 000: silent on a GAMMA channel's name: the option_id upper-cased (``ch6-1`` -> ``CH6-1``).
# 000: silent on the ``to`` format beyond the example: 8-15 digits, an optional leading ``+``;
# several recipients may be comma-separated (the doc says "one or multiple"); ``segments`` in
# the answer is the total over all recipients. One unpriced recipient refuses the whole send.
# 000: silent on log status words: ``sent`` until final, then ``delivered`` or ``failed``.
# Logs are newest first; ``search`` matches a substring of the recipient; ``from``/``to`` are
# inclusive UTC dates (``YYYY-MM-DD``); ``limit`` defaults to 10 and is at most 1000.
SKY_LOGS_MAX_LIMIT: Final = 1000
# 000: silent on message id values: integers counting up from a per-run base (so ids differ
# across sandbox restarts); Telekom ids come from the same counter. Sky Telecom has no
# delivery callback in its document, so none is posted.

# --- 001 SMS & Voice Platform (smsvoip) ----------------------------------------------------

# 001: silent on error bodies. Errors are ``{"error": {"code": ..., "message": ...}}``.
# 001: silent on the send answer beyond "message_id, status, and cost": it is
# ``{"message_id": "msg_...", "status": "queued", "cost": 0.0085, "currency": "EUR",
# "segments": 1}``.
SMSVOIP_ACCEPTED_STATUS: Final = "queued"
# 001: silent on the failed delivery word: reports say ``delivered`` or ``undelivered``
# (``delivered_at`` is null when undelivered).
SMSVOIP_FAILED_STATUS: Final = "undelivered"
# 001: silent on idempotency details. Keys are scoped to the API key and kept for the
# sandbox's lifetime (``/_sandbox/reset`` keeps them); bodies are compared as parsed JSON (key
# order and spacing ignored); only billed (2xx) answers are remembered and replayed (a replay
# bills nothing and is never dropped); a reused key with another body is HTTP 400
# ``idempotency_key_reused``. Keys are 1-255 characters.
SMSVOIP_IDEMPOTENCY_KEY_MAX: Final = 255
# 001: silent on ``to``: E.164 with ``+`` (as in its examples). ``from`` is optional and any
# string; a per-request ``callback_url`` overrides the account's.
# 001: silent on the /rates shape: ``{"rates": [{"country", "iso_code", "prefix", "sms",
# "voice": null, "currency", "route"}]}``; it needs no key ("optional for public rates").
# ``SandboxSettings.smsvoip_rates_shape`` makes it answer another reading as faithful to the
# document, so that tests reach the adapter's tolerant reader (engine/providers/readings.py)
# over HTTP: ``nested_camel`` ``{"data": {"rates": [{"country", "isoCode", "smsPrice":
# "0.0300", "voicePrice": null, "currencyCode", "routeLabel"}]}}`` (prices as strings);
# ``bare_list`` ``[{"country", "iso", "price", "currency", "label"}]``; ``keyed_by_iso``
# ``{"rates": {"GB": {"country", "sms": {"price", "currency"}, "route_label"}}}``.
SMSVOIP_RATES_SHAPES: Final = ("rates", "nested_camel", "bare_list", "keyed_by_iso")
# 001: silent on a message status endpoint: none is emulated (delivery reports only).
# 001: silent on the signed string: ``v1`` is hex HMAC-SHA256 of ``f"{t}.{body}"`` with the
# webhook secret, ``t`` the unix time of the attempt.

# --- 002 Voipex ----------------------------------------------------------------------------

# 002: silent on error bodies: ``{"title", "status", "detail", "code"}`` (RFC 7807 style)
# with HTTP 400 (validation, ``from`` not allowed, no price), 401, 403, 404, 429, 5xx.
# 002: silent on ``GET /SMS/allowed-numbers``: a JSON array of E.164 strings.
# 002: silent on the ``POST /SMS`` answer: HTTP 200 with the created SMS as in the webhook
# (``id, from, to, text, direction, state, createdAt``) with state ``QUEUED``; history shows
# ``QUEUED`` until final, then ``DELIVERED`` or ``FAILED``.
VOIPEX_PENDING_STATE: Final = "QUEUED"
# 002: silent on ``to``: E.164 with ``+`` as in its example. The webhook goes to the account
# ``callback_url`` with the final state only. The "instant SMS" route through another host
# (restapi) is not emulated. History needs both ``startTime`` and ``endTime`` (with a zone),
# includes start and excludes end, oldest first; message ids are UUID4 strings.

# --- 003 Telekom ---------------------------------------------------------------------------

# 003: silent on HTTP statuses. Every answer the document describes is HTTP 200 with
# ``result.status`` deciding; injected faults alone use 429/5xx (same body shape).
# 003: silent on error codes beyond SESSION_NOT_FOUND and IP_NOT_ALLOWED. The sandbox adds:
TELEKOM_CODES: Final = (
    "INVALID_TOKEN",
    "INVALID_PARAMETER",
    "MISSING_PARAMETER",
    "INVALID_NUMBER",
    "NO_ROUTE",
    "MESSAGE_NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "TOO_MANY_REQUESTS",
    "INTERNAL_ERROR",
)
# 003: silent on session_id form: a UUID4 string. ``/ping`` needs a session_id (not a token).
# 003: GET is "explicitly enabled per key"; the sandbox key has it off: GET answers
# METHOD_NOT_ALLOWED. The XML variant and the session cookie are not emulated: the
# session_id (or token) travels in the JSON body.
# 003: ``+4219...`` and ``09...`` ask for RCS: accepted, priced as ``4219...``, ledgered with
# ``to`` exactly as received, reported with ``channel: "rcs"``.
# 003: ``unicode: false`` strips diacritics and replaces any other non-GSM character with
# ``?``; segments are counted on that text. ``unicode: true`` counts UCS-2 segments.
# ``delivery_time``, ``validity``, ``priority``, ``type`` and ``groupId`` are validated, not
# scheduled. Status words before the final one: ``SENT``; final ``DELIVERED`` or
# ``UNDELIVERABLE``. ``deliveryDateTime`` is UTC. ``dsn`` goes to the account callback URL.
TELEKOM_PENDING: Final = ("SENT", "Sent")
TELEKOM_DELIVERED: Final = ("DELIVERED", "Delivered")
TELEKOM_FAILED: Final = ("UNDELIVERABLE", "Undeliverable")

# --- 004 Skynoo ----------------------------------------------------------------------------

# 004: "even on HTTP 200 a '400' body is a failure": every documented answer is HTTP 200 with
# ``code`` deciding (``"400"`` validation, ``"401"`` credentials, ``"403"`` suspended,
# ``"404"`` unknown path); injected faults alone use 429/5xx (same body shape).
# 004: the 460-character limit and the unsupported symbols (written for templates) apply to
# ``text`` and batch ``content`` after variable substitution.
SKYNOO_MAX_TEXT_CHARS: Final = 460
SKYNOO_FORBIDDEN_SYMBOLS: Final = frozenset("【】★※→●")
# 004: silent on the batch size limit.
SKYNOO_MAX_BATCH: Final = 10_000
SKYNOO_MAX_STATUS_IDS: Final = 100
# 004: silent on templates: the sandbox has none, so ``templateId`` is refused ("400").
# Message ids are 32 hex characters; task ids count up from 1001.
# 004: a batch is validated whole (one bad number, missing ``#var#`` or unpriced number
# refuses it) and billed and ledgered at ``batch/create``. Its status is ``executing`` until
# every message is final, then ``success`` (``fail`` is never emulated).
# 004: message states: ``SEND`` until final, then ``DELIVERED`` or ``UNDELIVERED`` with
# errorCode ``E66``; ``getStatus`` leaves unknown ids out of ``data``.
SKYNOO_PENDING: Final = "SEND"
SKYNOO_FAILED_ERROR_CODE: Final = "E66"
# 004: silent on delivery callbacks: none is posted; status is polled (getStatus, batch/*).
# The verification (OTP) endpoints are not emulated.
