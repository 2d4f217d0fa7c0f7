"""`dispatch report CAMPAIGN --html FILE`: one self-contained page, drawn by a real headless
Chromium with every network request blocked; the table stays bounded for large campaigns.

Real subprocesses of the CLI, real SQLite files, the built-in sandbox over 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Final

import pytest

from tests.helpers import ROOT, dispatch, write_campaign, write_config

CHROMIUM: Final = Path(os.environ.get("DISPATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS: Final = ROOT / "tests" / "artifacts"
"""Screenshots of the rendered report (ignored by git)."""
CHROMIUM_FLAGS: Final = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--host-resolver-rules=MAP * ~NOTFOUND"]
LAPTOP: Final = {"width": 1280, "height": 900}
PHONE: Final = {"width": 390, "height": 844}


def _browser_or_skip() -> Any:
    """Playwright's sync API; in CI a missing browser fails, locally it skips with why."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_playwright


def _example_delivered(folder: Path) -> None:
    """The README's example, run to the end on the built-in sandbox, with reports in."""
    shutil.copytree(ROOT / "campaigns" / "spring-sale", folder / "campaigns" / "spring-sale")
    shutil.copytree(ROOT / "rates", folder / "rates")
    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    run = dispatch("run", "campaigns/spring-sale/campaign.toml", cwd=folder)
    assert run.returncode == 0, run.stderr
    status = dispatch("status", "spring-sale", "--json", cwd=folder)
    total = json.loads(status.stdout)["delivery"]["total"]
    assert total["delivered"] > 0 and total["undelivered"] > 0, total


def test_example_report_draws_offline_in_chromium(tmp_path: Path) -> None:
    """The example campaign's page loads in Chromium with every request blocked: no console
    error, nothing asked of the network, every chart drawn, the table searchable."""
    sync_playwright = _browser_or_skip()
    _example_delivered(tmp_path)
    result = dispatch("report", "spring-sale", "--html", "report.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page_file = tmp_path / "report.html"
    html = page_file.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/", "").replace(
        "http://pygal.org", "").replace("http://github.com/Kozea/pygal", "")
    assert "https://" not in html

    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS,
                                    headless=True)
        try:
            context = browser.new_context(viewport=LAPTOP, offline=True)

            def block(route: Any) -> None:
                if not route.request.url.startswith("file://"):
                    requests.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", block)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")

            charts = page.eval_on_selector_all("figure.chart svg", """svgs => svgs.map(s => ({
                width: s.getBoundingClientRect().width,
                marks: s.querySelectorAll('.plot rect, .plot path').length}))""")
            assert len(charts) >= 7, charts
            assert all(c["width"] > 200 and c["marks"] > 0 for c in charts), charts
            assert page.locator("#recipients tbody tr").count() == 50
            assert "1,001 of 1,001 rows" in page.inner_text("#count")
            page.fill("#search", "too_long")
            assert page.locator("#recipients tbody tr").count() == 3
            page.fill("#search", "")
            page.locator("#recipients th", has_text="cost").click()
            page.screenshot(path=str(ARTIFACTS / "html_report_laptop.png"), full_page=True)
            page.set_viewport_size(PHONE)
            page.screenshot(path=str(ARTIFACTS / "html_report_phone.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width}"
        finally:
            browser.close()
    assert errors == []
    assert requests == []
    print(f"screenshots: {ARTIFACTS / 'html_report_laptop.png'}, "
          f"{ARTIFACTS / 'html_report_phone.png'}")


def test_large_campaign_table_holds_failures_and_a_bounded_sample(tmp_path: Path) -> None:
    """Past the full-table size the page holds every failure plus a bounded sample of the
    rest, and says so; its size does not grow with the valid rows."""
    from engine.html_report.data import FULL_TABLE_ROWS, SAMPLE_ROWS

    rows = FULL_TABLE_ROWS + 3_000
    lines = ["phone,name"] + [f"+42190{i:07d},N{i}" for i in range(rows - 40)]
    lines += ["not-a-number,X"] * 40
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "\n".join(lines) + "\n", name="big")
    plan = dispatch("plan", str(campaign), "--config", str(config), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    result = dispatch("report", "big", "--config", str(config), "--html", "big.html",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "big.html").read_text(encoding="utf-8")
    marker = '<script type="application/json" id="rows">'
    start = html.index(marker) + len(marker)
    table = json.loads(html[start:html.index("</script>", start)])
    rejected = [r for r in table if r[3] == "rejected"]
    assert len(rejected) == 40
    assert len(table) - 40 <= SAMPLE_ROWS
    assert f"all 40 failures and a sample of {len(table) - 40:,} other" in html
    assert f"--csv FILE lists all {rows:,}" in html

    only = dispatch("report", "big", "--config", str(config), "--html", "rejected.html",
                    "--state", "rejected", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert "Recipients in state rejected: all 40." in (tmp_path / "rejected.html").read_text(
        encoding="utf-8")


def test_report_html_to_an_unwritable_place_says_where_and_why(tmp_path: Path) -> None:
    """An HTML report into a folder that does not exist stops with exit 2 and one line naming
    the path; no traceback, no file."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421901234567,A\n", name="small")
    assert dispatch("plan", str(campaign), "--config", str(config), cwd=tmp_path).returncode == 0
    target = tmp_path / "missing" / "r.html"
    result = dispatch("report", "small", "--config", str(config), "--html", str(target),
                      cwd=tmp_path)
    assert result.returncode == 2
    assert str(target) in result.stderr and "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
