"""The finance dashboards in a real headless browser (Debian's chromium through Selenium): a
finance user logs in to the admin, opens each dashboard of the public scenario's root book as of
its report time, and sees the charts drawn with the scenario's figures.

The world is the public scenario (scenarios/october-2026.yaml) played in-process through the
scenario runner, the same services the jobs use. Its hand-worked figures (the expected report):
exposure 8927.50 prepaid + 0 unbilled + 652.00 receivables = 9579.50 gross; less 60.4375 deposits
and 100.00 payables = 9419.0625 net; aging 652.00 in 31-60; allowance 32.60.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

REPO = Path(__file__).resolve().parents[2]
AS_OF = "2026-12-31T23:59:59Z"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
needs_browser = pytest.mark.skipif(
    not HAVE_BROWSER,
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)


def public_scenario_play() -> None:
    from settlement.scenario.runner import scenario_run
    from settlement.scenario.spec import scenario_load

    scenario_run(scenario=scenario_load(REPO / "scenarios" / "october-2026.yaml"), say=lambda _: None)


def finance_user(username: str = "controller", *, with_permission: bool = True) -> Any:
    user = get_user_model().objects.create_user(username=username, password="s3cret-pass", is_staff=True)
    if with_permission:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="settlement", codename="view_invoice")
        )
    return user


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one (no network here).
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def bars(driver: Any, chart_id: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f"#{chart_id} svg rect.bar")


def bar_values(driver: Any, chart_id: str, series: str) -> dict[str, str]:
    return {
        b.get_attribute("data-category"): b.get_attribute("data-value")
        for b in bars(driver, chart_id)
        if b.get_attribute("data-series") == series
    }


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


@needs_browser
@pytest.mark.django_db(transaction=True)
def test_each_dashboard_draws_the_public_scenarios_figures(live_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    public_scenario_play()
    finance_user()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/finance/")
    browser.find_element(By.NAME, "username").send_keys("controller")
    browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The click only starts the login POST: wait for the redirect to land (slow under CI load).
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda d: "Finance dashboards" in d.title)
    assert "Finance dashboards" in browser.title
    scope = f"book=platform&as_of={AS_OF}"

    # Exposure: the last point is the report time; five stacked components per point.
    browser.get(f"{live_server.url}/admin/finance/exposure/?{scope}&days=7")
    assert "Exposure over time" in browser.title
    rows = browser.find_elements(By.CSS_SELECTOR, "#exposure-table tbody tr")
    assert len(rows) >= 2
    assert len(bars(browser, "exposure-chart")) == 5 * len(rows)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#exposure-chart svg polyline.line")) == 2
    assert text(browser, "#latest-receivables") == "652.00"
    assert text(browser, "#latest-gross") == "9579.50"
    assert text(browser, "#latest-net") == "9419.0625"
    latest = rows[0].find_elements(By.TAG_NAME, "td")
    # 8927.50 prepaid, 0 unbilled, 652.00 receivables, 9579.50 gross, 60.4375 deposits, 100.00
    # payables, 9419.0625 net.
    assert [td.text for td in latest[1:]] == [
        "8927.50",
        "0.00",
        "652.00",
        "9579.50",
        "60.4375",
        "100.00",
        "9419.0625",
    ]
    last_point = bar_values(browser, "exposure-chart", "receivables")
    assert list(last_point.values())[-1] == "652.00"

    # Aging: one bar per bucket; alpha's 652.00 is 31 days past due on 2026-12-31.
    browser.get(f"{live_server.url}/admin/finance/aging/?{scope}")
    aging = bar_values(browser, "aging-chart", "receivables")
    assert aging == {
        "current": "0.00",
        "1-30": "0.00",
        "31-60": "652.00",
        "61-90": "0.00",
        "91-180": "0.00",
        "180+": "0.00",
    }
    assert "652.00" in text(browser, "#aging-total")

    # Allowance: month ends July to December; provisioning on 2026-12-31 posted 652.00 x 0.05 = 32.60.
    browser.get(f"{live_server.url}/admin/finance/allowance/?{scope}")
    assert text(browser, "#allowance-current") == "32.60"
    assert bar_values(browser, "allowance-chart", "allowance") == {
        "2026-07": "0.00",
        "2026-08": "0.00",
        "2026-09": "0.00",
        "2026-10": "0.00",
        "2026-11": "0.00",
        "2026-12": "32.60",
    }

    # Margins for October: three models x (revenue, cost, margin); three tiers likewise.
    browser.get(f"{live_server.url}/admin/finance/margins/?{scope}&period=2026-10")
    assert len(bars(browser, "margin-model-chart")) == 9
    assert bar_values(browser, "margin-model-chart", "margin") == {
        "minimax-m2.5": "23.00",
        "claude-opus-4.6": "-6.00",
        "glm-5": "2.0625",
    }
    assert "negative" in text(browser, "#margin-model-table")
    # Each hop: platform 1191.5625 - 1172.50 = 19.0625; alpha 1200 - 1152 = 48; beta 1250 - 1200 = 50.
    assert bar_values(browser, "margin-tier-chart", "margin") == {
        "tier 0 (platform)": "19.0625",
        "tier 1 (alpha)": "48.00",
        "tier 2 (beta)": "50.00",
    }

    # Cover: minimax 10000 - 1150 list = 8850.00 left (7965.00 at cost), zhipu 1000 - 37.50 = 962.50.
    browser.get(f"{live_server.url}/admin/finance/cover/?{scope}")
    remaining = bar_values(browser, "cover-credit-chart", "remaining_cost")
    assert remaining["minimax"] == "7965.00" and remaining["zhipu"] == "962.50"
    assert bar_values(browser, "cover-credit-chart", "remaining_list")["minimax"] == "8850.00"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cover-days-chart svg rect.bar")) == len(remaining)

    if os.environ.get("DASHBOARD_SCREENSHOTS"):
        for page in ("exposure", "aging", "allowance", "margins", "cover"):
            browser.get(f"{live_server.url}/admin/finance/{page}/?{scope}&period=2026-10")
            browser.save_screenshot(os.path.join(os.environ["DASHBOARD_SCREENSHOTS"], f"{page}.png"))


@pytest.mark.django_db
def test_the_dashboards_are_for_finance_staff_only(client: Client) -> None:
    from ledger.services import book_create

    book_create(code="platform", name="Platform Ltd", currency="USD")
    # Anonymous: the admin login page.
    response = client.get("/admin/finance/aging/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    # Staff without the permission: refused.
    client.force_login(finance_user("clerk", with_permission=False))
    assert client.get("/admin/finance/aging/").status_code == 403
    # With it: the page, and a clear 4xx for a bad parameter, never a 500.
    client.force_login(finance_user())
    assert client.get("/admin/finance/allowance/").status_code == 200
    assert client.get("/admin/finance/exposure/?as_of=yesterday").status_code == 400
    assert client.get("/admin/finance/exposure/?as_of=2026-12-31T00:00:00").status_code == 400
    assert client.get("/admin/finance/exposure/?days=-3").status_code == 400
    assert client.get("/admin/finance/margins/?period=October").status_code == 400
    assert client.get("/admin/finance/aging/?book=nope").status_code == 404
