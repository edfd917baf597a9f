"""The close is idempotent and resumable (§7): two workers closing at once produce one set, and a
close killed half-way (SIGKILL between chunks) resumes to exactly the same invoices and postings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from ledger.models import JournalEntry
from settlement.models import CloseRun, Invoice, InvoiceLine
from settlement.services.close import PAUSE_ENV, close_run
from tests.settlement.test_close_world import NOV_1, D, World, october_usage, world_build
from tests.settlement.test_prepaid_shortfall import devsolo_overrun

ROOT = Path(__file__).resolve().parents[2]


def extra_customers(world: World, n: int) -> list[Any]:
    """n more customers of the root, each with one October call (100M input x 0.30 = 30.00)."""
    from accounts.services import account_create, price_list_set
    from tests.settlement.test_close_world import T0, UsageFactory, ingest, utc

    made = []
    for i in range(n):
        acc = account_create(
            root_book=world.book,
            code=f"cust{i}",
            name=f"Customer {i}",
            kind="customer",
            currency="USD",
            terms="monthly",
            credit_limit=D(1000),
        )
        price_list_set(account=acc, effective_from=T0, rule="discount", rate=D("0"))
        made.append(acc)
    ingest(
        [UsageFactory(request_id=f"c{i}", account=f"cust{i}", input_tokens=100_000_000) for i in range(n)],
        utc("2026-10-15T10:00:00Z"),
    )
    return made


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    invoices = list(
        Invoice.objects.order_by("account__code").values_list("account__code", "label", "total", "status")
    )
    lines = list(
        InvoiceLine.objects.order_by("invoice__account__code", "position").values_list(
            "invoice__account__code", "position", "amount"
        )
    )
    return invoices, lines, JournalEntry.objects.count()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_closes_produce_one_set_of_invoices() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    extra_customers(world, 6)
    devsolo_overrun()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            close_run(book=world.book, now=NOV_1, chunk_size=2)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    # alpha + 6 customers billed by the root, one draft each, and devsolo's shortfall invoice,
    # issued once with the book's first number; one run, done.
    assert Invoice.objects.filter(issuer_book=world.book).count() == 8
    assert list(Invoice.objects.filter(account=world.devsolo).values_list("number", "total")) == [
        ("PLATFORM-2026-000001", D("18.69"))
    ]
    assert CloseRun.objects.filter(book=world.book).count() == 1
    assert CloseRun.objects.get(book=world.book).status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_close_killed_half_way_resumes_to_the_same_result() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    extra_customers(world, 6)
    devsolo_overrun()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        PAUSE_ENV: "30",
    }
    script = (
        "import django; django.setup()\n"
        "from datetime import datetime, UTC\n"
        "from ledger.models import Book\n"
        "from settlement.services.close import close_run\n"
        "close_run(book=Book.objects.get(code='platform'), now=datetime(2026, 11, 1, tzinfo=UTC), chunk_size=2)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "distributor.settings"},
    )
    try:
        # Wait for the first chunk to commit, then kill the worker while it holds the run.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = CloseRun.objects.filter(book=world.book).first()
            if run is not None and run.last_account_id > 0:
                break
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    run = CloseRun.objects.get(book=world.book)
    assert run.status == "running" and run.last_account_id > 0
    part = Invoice.objects.filter(issuer_book=world.book).count()
    assert 0 < part < 8
    close_run(book=world.book, now=NOV_1, chunk_size=2)
    after_resume = snapshot()
    assert CloseRun.objects.get(book=world.book).status == "done"
    assert Invoice.objects.filter(issuer_book=world.book).count() == 8
    assert Invoice.objects.get(account=world.devsolo).total == D("18.69")
    # A third run changes nothing.
    close_run(book=world.book, now=NOV_1, chunk_size=2)
    assert snapshot() == after_resume


@pytest.mark.django_db(transaction=True)
def test_late_usage_landing_while_the_issue_job_runs_is_billed_exactly_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from settlement.selectors import unbilled_by_payer
    from settlement.services.invoicing import drafts_issue_due
    from tests.settlement.test_close_world import UsageFactory, ingest, utc

    world = world_build(grace_days=3)
    october_usage(world, devsolo_calls=10)
    customers = extra_customers(world, 6)
    close_run(book=world.book, now=NOV_1)
    # The issue job pauses between its chunks of two drafts, so the late calls land in between.
    monkeypatch.setenv(PAUSE_ENV, "0.25")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def gateway() -> None:
        # Three late October calls per customer (10M input x 0.30 = 3.00 each), one batch each, on
        # its own connection while the issue job works through the drafts two at a time.
        try:
            barrier.wait()
            for round_ in range(3):
                for i in range(len(customers)):
                    ingest(
                        [
                            UsageFactory(
                                request_id=f"late-{round_}-{i}",
                                account=f"cust{i}",
                                input_tokens=10_000_000,
                                occurred_at="2026-10-31T20:00:00Z",
                            )
                        ],
                        utc("2026-11-03T12:00:00Z"),
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def issuer() -> None:
        try:
            barrier.wait()
            drafts_issue_due(book=world.book, now=utc("2026-11-04T00:00:00Z"), chunk_size=2)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=gateway), threading.Thread(target=issuer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert Invoice.objects.filter(issuer_book=world.book, status="issued").count() == 7
    # Each late call went either on the October invoice (landed before its draft was issued) or is
    # still unbilled; nothing counted twice, nothing lost: 30.00 + 3 x 3.00 per customer.
    for account in customers:
        october = Invoice.objects.get(account=account, label="2026-10")
        waiting = unbilled_by_payer(payer_account_ids=[account.pk]).get(account.pk, D(0))
        assert october.subtotal + waiting == D("39.00")
    # The November close puts what waited on a late line; then everything is billed once.
    monkeypatch.delenv(PAUSE_ENV)
    drafts_issue_due(book=world.book, now=utc("2026-12-04T00:00:00Z"))
    for account in customers:
        billed = sum(Invoice.objects.filter(account=account).values_list("subtotal", flat=True), D(0))
        assert billed == D("39.00")
        assert unbilled_by_payer(payer_account_ids=[account.pk]) == {}
