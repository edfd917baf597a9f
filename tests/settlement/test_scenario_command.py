"""`manage.py scenario`: refusal before any database work, the report's figures, pending actions
stated plainly, and the throwaway database dropped after the run."""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ledger.models import Book
from settlement.scenario.runner import HANDLERS, ScenarioActionPending

REPO = Path(__file__).resolve().parents[2]

BOOK_ONLY = """
book: {code: platform, name: Platform Ltd, currency: USD}
report: {as_of: 2026-12-31T23:59:59Z}
"""

PREPAID_WORLD = """
book: {code: platform, name: Platform Ltd, currency: USD}
providers:
  - code: minimax
    name: MiniMax
    currency: USD
    models:
      - code: minimax-m2.5
        prices: [{from: 2026-01-01, input: "0.30", output: "1.10"}]
accounts:
  - {code: devsolo, name: Dev Solo, parent: null, kind: customer, currency: USD, terms: prepaid,
     prices: [{from: 2026-01-01, markup: "0.055"}]}
story:
  - at: 2026-09-25T00:00:00Z
    purchase: {provider: minimax, paid: "900.00", credit: "1000.00", expires: 2026-10-31}
  - at: 2026-10-01T00:00:00Z
    topup: {account: devsolo, amount: "100.00", reference: "CARD-0001"}
report:
  as_of: 2026-12-31T23:59:59Z
"""


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("scenario", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def scenario_databases(prefix: str) -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])
        return [row[0] for row in cur.fetchall()]


@pytest.mark.django_db
def test_a_book_only_scenario_reports_a_zero_trial_balance(tmp_path: Path) -> None:
    out, _ = run(str(write(tmp_path, BOOK_ONLY)), "--keep", "--format", "json")
    report = json.loads(out)
    assert report["as_of"] == "2026-12-31T23:59:59+00:00"
    # A new book has posted nothing: 0 debits, 0 credits, difference 0, in its base currency.
    assert report["trial_balance"] == [
        {"book": "platform", "currency": "USD", "debits": "0", "credits": "0", "difference": "0"}
    ]


@pytest.mark.django_db
def test_the_text_report_shows_the_same_figures(tmp_path: Path) -> None:
    out, _ = run(str(write(tmp_path, BOOK_ONLY)), "--keep")
    assert "As of: 2026-12-31T23:59:59+00:00" in out
    assert "Trial balance" in out
    assert "platform  USD            0        0           0" in out


@pytest.mark.django_db
def test_a_bad_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = BOOK_ONLY + "story:\n  - at: 2026-10-01T00:00:00Z\n    topup: {account: nobody, amount: 0.30}\n"
    with pytest.raises(CommandError) as caught:
        run(str(write(tmp_path, bad)), "--keep")
    assert caught.value.returncode == 2
    assert str(caught.value) == (
        "scenario refused: story[0].topup.account: expected the code of an account listed under accounts, "
        "got 'nobody'"
    )
    assert not Book.objects.exists()
    assert scenario_databases(f"scenario_{os.getpid()}_") == []


@pytest.mark.django_db
def test_an_as_of_without_a_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as caught:
        run(str(write(tmp_path, BOOK_ONLY)), "--keep", "--as-of", "2026-12-31T00:00:00")
    assert str(caught.value) == (
        "scenario refused: --as-of: expected a timestamp with a time zone (e.g. 2026-10-01T00:00:00Z), "
        "got 2026-12-31T00:00:00 without a zone"
    )


def _not_built_yet(run: Any, event: Any) -> None:
    raise ScenarioActionPending(f"{event.action} waits for a part not built yet")


@pytest.mark.django_db
def test_an_action_not_built_yet_stops_the_run_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(HANDLERS, "close", _not_built_yet)
    text = BOOK_ONLY + "story:\n  - at: 2026-11-01T00:00:00Z\n    close: {}\n"
    with pytest.raises(CommandError) as caught:
        run(str(write(tmp_path, text)), "--keep")
    assert caught.value.returncode == 3
    assert (
        str(caught.value)
        == "story[0] (2026-11-01T00:00:00+00:00 close): pending: close waits for a part not built yet"
    )


@pytest.mark.django_db
def test_skip_pending_warns_and_carries_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(HANDLERS, "provision", _not_built_yet)
    text = BOOK_ONLY + "story:\n  - at: 2026-11-01T00:00:00Z\n    provision: {}\n"
    out, err = run(str(write(tmp_path, text)), "--keep", "--skip-pending", "--format", "json")
    assert err.strip() == (
        "warning: skipped story[0] (2026-11-01T00:00:00+00:00 provision): pending: "
        "provision waits for a part not built yet"
    )
    assert json.loads(out)["trial_balance"][0]["difference"] == "0"


@pytest.mark.django_db
def test_the_public_scenario_report_holds_every_check(tmp_path: Path) -> None:
    """The whole public scenario, played in-process, against its hand-worked expected report with
    the shared checker (scenarios/check_report.py is its byte-for-byte copy)."""
    pytest.importorskip("settlement.services.provisioning").provision_run  # issue 6
    pytest.importorskip("settlement.services.dunning").dunning_run  # issue 6
    out, err = run(str(REPO / "scenarios" / "october-2026.yaml"), "--keep", "--format", "json")
    assert "warning" not in err
    actual = write(tmp_path, out, "report.json")
    checker = runpy.run_path(str(REPO / "scenarios" / "check_report.py"))
    printed = StringIO()
    with contextlib.redirect_stdout(printed):
        failed = checker["main"](str(REPO / "scenarios" / "october-2026.expected.json"), str(actual))
    assert printed.getvalue().splitlines()[-1] == "187 of 187 checks hold", printed.getvalue()
    assert failed == 0


@pytest.mark.django_db
def test_the_clock_expires_purchases_and_stops_at_the_report_time(tmp_path: Path) -> None:
    pytest.importorskip("procurement.services").quota_purchase_record  # issue 3
    path = str(write(tmp_path, PREPAID_WORLD))
    out, err = run(path, "--keep", "--format", "json", "--as-of", "2026-09-30T00:00:00Z")
    report = json.loads(out)
    # As of 30 Sep only the purchase is played: 900.00 paid for 1,000.00 of credit, all unused.
    # Postings: Dr upstream prepayments 900 / Cr cash 900.
    assert report["exposure"][0]["upstream_prepaid"] == "900"
    assert report["trial_balance"][0]["debits"] == "900"
    assert "1 event(s) after the report time" in err


@pytest.mark.django_db
def test_the_clock_passing_an_expiry_books_breakage(tmp_path: Path) -> None:
    pytest.importorskip("procurement.services").quota_purchase_record  # issue 3
    out, _ = run(str(write(tmp_path, PREPAID_WORLD)), "--keep", "--format", "json")
    report = json.loads(out)
    # The credit lapses at the end of 31 Oct: the 900.00 at cost is breakage (Dr breakage 900 /
    # Cr prepayments 900). With the purchase (900) and the top-up (Dr cash 100 / Cr deposits 100):
    # debits 900 + 900 + 100 = 1,900 = credits.
    assert report["exposure"][0]["upstream_prepaid"] == "0"
    assert report["trial_balance"][0] == {
        "book": "platform",
        "currency": "USD",
        "debits": "1900",
        "credits": "1900",
        "difference": "0",
    }


@pytest.mark.django_db
def test_a_throwaway_run_drops_its_database(tmp_path: Path) -> None:
    # A subprocess: pytest-django holds its own test database; the command makes and drops its own
    # copy of the migrated template on the configured server, named after its process id.
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "scenario", str(write(tmp_path, BOOK_ONLY)), "--format", "json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["trial_balance"][0]["difference"] == "0"
    assert scenario_databases(f"scenario_{proc.pid}_") == []
    # The migrated template stays for the next run.
    assert len(scenario_databases("scenario_template_")) >= 1


@pytest.mark.django_db
def test_a_refused_throwaway_run_drops_its_database_too(tmp_path: Path) -> None:
    text = PREPAID_WORLD.replace(
        "report:", "  - at: 2026-11-05T00:00:00Z\n    writeoff: {account: devsolo, period: 2026-10}\nreport:"
    )
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "scenario", str(write(tmp_path, text))],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4
    assert "devsolo has no invoice for 2026-10 to write off" in err
    assert out == ""
    assert scenario_databases(f"scenario_{proc.pid}_") == []
