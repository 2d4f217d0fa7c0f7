"""Bad config stops before anything is sent, with an error naming the file and the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from tests.helpers import ROOT, dispatch, write_campaign, write_config


def test_shipped_config_loads_with_all_five_providers_on_the_sandbox() -> None:
    """config.toml as shipped is valid and points every provider at the sandbox."""
    config = load_config(ROOT / "config.toml")
    assert [p.kind for p in config.providers] == [
        "skytelecom", "smsvoip", "voipex", "telekom", "skynoo"]
    assert all(p.uses_sandbox for p in config.providers)
    assert config.provider("smsvoip").rate_limit is not None
    assert config.provider("smsvoip").rate_limit.count == 120
    assert config.provider("smsvoip").rate_limit.period_s == 60
    assert config.routing.fx["USD"] == Decimal("0.92")


def test_env_variables_fill_secrets_and_defaults(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} takes the environment's value; ${VAR:-x} falls back to x."""
    monkeypatch.setenv("SMSVOIP_API_KEY", "sk_live_from_env")
    config = load_config(write_config(tmp_path))
    assert config.provider("smsvoip").api_key == "sk_live_from_env"
    assert config.provider("skytelecom").api_key == "sky_test_key"


BAD = [
    pytest.param('[providers.smsvoip]\napi_key = "${NOPE_NOT_SET}"\nrates = "x.csv"\n',
                 "providers.smsvoip.api_key", "NOPE_NOT_SET", id="missing-env"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\nrate_limt = "1/s"\n',
                 "providers.smsvoip.rate_limt", "unknown key", id="unknown-key"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\nconcurrency = "ten"\n',
                 "providers.smsvoip.concurrency", "must be an integer", id="wrong-type"),
    pytest.param('[providers.skynoo]\napi_key = "app"\n',
                 "providers.skynoo.api_secret", "required", id="missing-credential"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\nrate_limit = "fast"\n',
                 "providers.smsvoip.rate_limit", "not a rate", id="bad-rate"),
    pytest.param('[providers.x]\nkind = "twilio"\napi_key = "k"\n',
                 "providers.x.kind", "not one of", id="bad-kind"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\ncurrency = "GBP"\n',
                 "providers.smsvoip.currency", "[routing.fx] has no GBP", id="mixed-currency"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\nrates = "missing.csv"\n',
                 "providers.smsvoip.rates", "does not exist", id="missing-rates"),
    pytest.param('[providers.smsvoip]\napi_key = "k"\nbase_url = "ftp://x"\n',
                 "providers.smsvoip.base_url", "neither", id="bad-url"),
]


@pytest.mark.parametrize(("providers", "key", "words"), BAD)
def test_bad_config_names_file_and_key(tmp_path: Path, providers: str, key: str,
                                       words: str) -> None:
    """Each kind of bad config raises ConfigError naming the file and the dotted key."""
    path = write_config(tmp_path, providers=providers)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)
    assert words in str(info.value)


def test_bad_rate_table_names_file_and_line(tmp_path: Path) -> None:
    """A rate CSV with a bad price names the CSV and its line."""
    rates = tmp_path / "rates.csv"
    rates.write_text("prefix,price,currency\n44,0.03,EUR\n49,cheap,EUR\n")
    write_config(tmp_path, providers=f'[providers.smsvoip]\napi_key = "k"\nrates = "{rates}"\n')
    campaign = write_campaign(tmp_path, "phone,name\n+447400123456,Ann\n")
    result = dispatch("plan", str(campaign), "--config", str(tmp_path / "config.toml"))
    assert result.returncode == 2
    assert f"{rates}: line 3: price 'cheap' is not a number" in result.stderr


def test_bad_config_exits_2_and_creates_no_database(tmp_path: Path) -> None:
    """The CLI reports bad config with exit code 2 and touches nothing."""
    write_config(tmp_path, providers='[providers.smsvoip]\napi_key = "${NOPE_NOT_SET}"\n')
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n")
    result = dispatch("plan", str(campaign), "--config", str(tmp_path / "config.toml"))
    assert result.returncode == 2
    assert "environment variable NOPE_NOT_SET is not set" in result.stderr
    assert not (tmp_path / "dispatch.db").exists()


def test_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    """An error that would quote a secret from the environment shows *** instead."""
    secret = "sk_live_very_secret_value"
    write_config(tmp_path, providers='[providers.smsvoip]\napi_key = "${SMSVOIP_API_KEY}"\n'
                 'base_url = "${SMSVOIP_API_KEY}"\n')
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n")
    result = dispatch("plan", str(campaign), "--config", str(tmp_path / "config.toml"),
                      env={"SMSVOIP_API_KEY": secret})
    assert result.returncode == 2
    assert "providers.smsvoip.base_url" in result.stderr
    assert "***" in result.stderr
    assert secret not in result.stderr + result.stdout
