"""Generate a synthetic multi-country campaign: recipients CSV + campaign TOML + opt-out list.

Deterministic for a given ``--seed``: the same command writes the same bytes. Numbers are
mobile numbers of 16 countries written the ways real spreadsheets hold them (E.164, ``00``
international, national with spaces or dashes); ``--bad-share`` of rows are deliberately bad,
cycling through every reject and skip kind the planner knows.

    python bench/generate.py --rows 1000000 --out bench/out/1m
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

# country: (calling code, national trunk prefix, mobile number shapes: 'x' = random digit).
# Each shape is the country's phonenumbers example mobile number with its tail made random,
# checked so that every completion is valid for that country.
COUNTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "US": ("1", "", ("2015xxxxxx",)),
    "GB": ("44", "0", ("740xxxxxxx",)),
    "DE": ("49", "0", ("1512xxxxxxx",)),
    "FR": ("33", "0", ("61xxxxxxx",)),
    "ES": ("34", "", ("61xxxxxxx",)),
    "IT": ("39", "", ("312xxxxxxx",)),
    "NL": ("31", "0", ("61xxxxxxx",)),
    "PL": ("48", "", ("51xxxxxxx",)),
    "SK": ("421", "0", ("912xxxxxx",)),
    "CZ": ("420", "", ("601xxxxxx",)),
    "AT": ("43", "0", ("66xxxxxxx",)),
    "GR": ("30", "", ("691xxxxxxx",)),
    "UA": ("380", "0", ("50xxxxxxx",)),
    "IN": ("91", "0", ("812xxxxxxx",)),
    "BR": ("55", "0", ("1196xxxxxxx",)),
    "HU": ("36", "06", ("20xxxxxxx",)),
}
GREETING = {
    "US": "Hi",
    "GB": "Hi",
    "DE": "Hallo",
    "FR": "Bonjour",
    "ES": "Hola",
    "IT": "Ciao",
    "NL": "Hoi",
    "PL": "Cześć",
    "SK": "Ahoj",
    "CZ": "Ahoj",
    "AT": "Servus",
    "GR": "Γεια σου",
    "UA": "Привіт",
    "IN": "Namaste",
    "BR": "Olá",
    "HU": "Szia",
}
OFFER = ", spring sale: 20% off everything with code {code}. Reply STOP to opt out."
NAMES = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Eva",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jakub",
    "Katarína",
    "Luca",
    "Marta",
    "Noah",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sofia",
    "Tomás",
)
BAD_KINDS = (
    "invalid_number",
    "missing_variable",
    "too_long",
    "no_route",
    "empty_message",
    "malformed_row",
    "duplicate",
    "opted_out",
)


def fill(shape: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if c == "x" else c for c in shape)


def write_number(country: str, national: str, region: str, rng: random.Random) -> str:
    cc, trunk, _ = COUNTRIES[country]
    style = rng.randrange(10)
    if style < 6:
        return f"+{cc}{national}"
    if style < 7:
        return f"00{cc} {national[:3]} {national[3:]}"
    if style < 8:
        return f"+{cc} {national[:3]}-{national[3:6]}-{national[6:]}"
    if country == region:
        return f"{trunk}{national[:3]} {national[3:6]} {national[6:]}"
    return f"+{cc} ({national[:3]}) {national[3:]}"


def generate(rows: int, seed: int, bad_share: float, region: str, out: Path, name: str) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    countries = list(COUNTRIES)
    seen: list[str] = []
    opt_out: list[str] = []
    bad_every = int(1 / bad_share) if bad_share > 0 else 0
    with (out / "recipients.csv").open("w", encoding="utf-8", newline="") as f:
        f.write("phone,first_name,greeting,offer,code\n")
        for i in range(rows):
            country = countries[i % len(countries)] if i < len(countries) else rng.choice(countries)
            national = fill(rng.choice(COUNTRIES[country][2]), rng)
            phone = write_number(country, national, region, rng)
            first = rng.choice(NAMES)
            code = f"SPRING{rng.randrange(100, 999)}"
            greeting, offer = GREETING[country], OFFER.format(code=code)
            if bad_every and i % bad_every == bad_every - 1:
                kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)]
                if kind == "invalid_number":
                    phone = rng.choice(("12345", "+999 123 456", "call me", "", "+1 000"))
                elif kind == "missing_variable":
                    first = ""
                elif kind == "too_long":
                    offer = ", " + "very long offer text " * 40
                elif kind == "no_route":
                    phone = f"+81 90 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
                elif kind == "empty_message":
                    greeting, first, offer = "\u200b", "\u200b", "\u200b"
                elif kind == "malformed_row":
                    f.write(f"{phone},{first},only three fields\n")
                    continue
                elif kind == "duplicate" and seen:
                    phone = rng.choice(seen)
                elif kind == "opted_out":
                    opt_out.append(f"+{COUNTRIES[country][0]}{national}")
            elif len(seen) < 1000:
                seen.append(phone)
            f.write(f'{phone},{first},{greeting},"{offer}",{code}\n')
    with (out / "opt-out.txt").open("w", encoding="utf-8") as f:
        f.write("# numbers that asked never to be messaged again\n")
        f.writelines(n + "\n" for n in opt_out)
    (out / "campaign.toml").write_text(
        f'name = "{name}"\n'
        'recipients = "recipients.csv"\n'
        'phone_column = "phone"\n'
        f'default_region = "{region}"\n'
        'sender = "ACME"\n'
        'message = "{greeting} {first_name}{offer}"\n'
        'opt_out = "opt-out.txt"\n'
        "max_segments = 4\n"
        'on_unknown = "settle"\n'
        "\n[defaults]\n"
        'greeting = "Hi"\n',
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-share", type=float, default=0.02, help="share of bad rows (0..1)")
    p.add_argument("--region", default="SK", help="default_region of the campaign")
    p.add_argument("--name", default=None, help="campaign name (default: synthetic-ROWS)")
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    args = p.parse_args(argv)
    generate(
        args.rows,
        args.seed,
        args.bad_share,
        args.region,
        args.out,
        args.name or f"synthetic-{args.rows}",
    )
    print(f"wrote {args.rows} rows to {args.out / 'recipients.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
