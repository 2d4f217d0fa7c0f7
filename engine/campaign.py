"""Loading and validating a campaign file (``campaigns/*.toml``).

Kept apart from :mod:`engine.config` because a campaign is the user's per-send document and
changes far more often than the provider config; both share :class:`TomlTable`, so errors
read the same way: the file, the dotted key, what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast

import phonenumbers

from engine.config import TomlTable, parse_decimal, read_toml
from engine.errors import CampaignError
from engine.smart_encoding import ENCODINGS, EncodingMode
from engine.template import Template

OnUnknown = Literal["settle", "resend", "report"]
ON_UNKNOWN: Final[tuple[OnUnknown, ...]] = ("settle", "resend", "report")
DEFAULT_MAX_SEGMENTS: Final = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Campaign:
    path: Path
    name: str
    recipients: Path
    phone_column: str
    default_region: str
    sender: str
    message: Template
    defaults: Mapping[str, str]
    providers: tuple[str, ...] | None
    max_cost: Decimal | None
    max_segments: int
    opt_out: Path | None
    on_unknown: OnUnknown
    shift_tables: tuple[str, ...] = ()
    encoding: EncodingMode = "smart"
    """``smart``: typographic look-alikes replaced where that keeps a message GSM-7
    (:mod:`engine.smart_encoding`); ``keep``: every text sent as written."""
    transliterate: bool = False
    """With ``smart``, letters with diacritics GSM-7 lacks are replaced too (``á`` -> ``a``)."""

    @property
    def fingerprint(self) -> str:
        """What a stored plan was made from: a changed message or recipient file means a
        different campaign, and the store refuses to mix the two."""
        h = hashlib.sha256()
        for part in (self.message.source, str(self.recipients.resolve()), self.phone_column,
                     self.default_region, repr(sorted(self.defaults.items())),
                     repr(self.providers), str(self.max_segments), repr(self.shift_tables),
                     str(self.opt_out.resolve() if self.opt_out else "")):
            h.update(part.encode())
            h.update(b"\0")
        if (self.encoding, self.transliterate) != ("smart", False):
            # Only when not the default, so that plans made before the keys existed match.
            h.update(f"{self.encoding} {self.transliterate}".encode())
        return h.hexdigest()[:16]


def load_campaign(path: Path | str) -> Campaign:
    """Read and validate *path*; raise :class:`CampaignError` on the first problem."""
    path = Path(path)
    t = TomlTable(read_toml(path, CampaignError), file=path, error=CampaignError)
    base = path.resolve().parent

    name = t.get("name", str, required=True)
    if not _NAME.match(name):
        raise t.error("name", "use letters, digits, '_', '.', '-' (at most 64)")
    recipients = base / t.get("recipients", str, required=True)
    if recipients.is_dir():
        raise t.error("recipients", f"{recipients} is a directory, not a file")
    if not recipients.is_file():
        raise t.error("recipients", f"recipients file {recipients} does not exist")
    region = t.get("default_region", str, required=True).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise t.error("default_region", f"{region!r} is not an ISO 3166 region code")
    message_src = t.get("message", str, required=True)
    try:
        message = Template.compile(message_src)
    except ValueError as exc:
        raise t.error("message", str(exc)) from None
    defaults_t = t.table("defaults")
    defaults = {col: _default_value(defaults_t, col) for col in defaults_t.data}
    providers = t.optional("providers", list)
    if providers is not None and (not providers or not all(isinstance(p, str) for p in providers)):
        raise t.error("providers", "must be a non-empty array of provider names")
    max_cost_raw = t.optional("max_cost", object)
    max_segments = t.get("max_segments", int, DEFAULT_MAX_SEGMENTS)
    if max_segments < 1:
        raise t.error("max_segments", "must be at least 1")
    opt_out = t.optional("opt_out", str)
    opt_out_path = base / opt_out if opt_out else None
    if opt_out_path is not None and not opt_out_path.is_file():
        raise t.error("opt_out", f"opt-out file {opt_out_path} does not exist")
    on_unknown = t.get("on_unknown", str, "settle")
    if on_unknown not in ON_UNKNOWN:
        raise t.error("on_unknown", f"{on_unknown!r} is not one of {', '.join(ON_UNKNOWN)}")
    shift = t.optional("shift_tables", list) or []
    if not all(s in ("tr", "es", "pt") for s in shift):
        raise t.error("shift_tables", "may hold only \"tr\", \"es\", \"pt\"")
    encoding = t.get("encoding", str, "smart")
    if encoding not in ENCODINGS:
        raise t.error("encoding", f"{encoding!r} is not one of {', '.join(ENCODINGS)}")
    transliterate = t.get("transliterate", bool, False)
    if transliterate and encoding != "smart":
        raise t.error("transliterate", 'needs encoding = "smart"')
    campaign = Campaign(
        path=path,
        name=name,
        recipients=recipients,
        phone_column=t.get("phone_column", str, "phone"),
        default_region=region,
        sender=t.get("sender", str, ""),
        message=message,
        defaults=MappingProxyType(defaults),
        providers=tuple(cast(list[str], providers)) if providers is not None else None,
        max_cost=(parse_decimal(max_cost_raw, table=t, name="max_cost")
                  if max_cost_raw is not None else None),
        max_segments=max_segments,
        opt_out=opt_out_path,
        on_unknown=on_unknown,
        shift_tables=tuple(cast(list[str], shift)),
        encoding=encoding,
        transliterate=transliterate,
    )
    t.reject_unknown()
    defaults_t.reject_unknown()
    return campaign




def _default_value(t: TomlTable, col: str) -> str:
    value = t.data[col]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise t.error(col, "a default must be a string or a number")
    t.get(col, object)
    return str(value)
