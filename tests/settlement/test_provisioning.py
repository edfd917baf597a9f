"""Bad-debt provisioning (§9, §11.10): the versioned matrix, the required allowance rounded once,
only the change posted against the allowance's balance, one entry per book, currency and month,
and a rerun that changes nothing."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distributor.errors import ValidationFailed
from ledger.models import JournalEntry, Posting
from settlement.models import ProvisionMatrix, ProvisionRun
from settlement.risk_selectors import allowance_balance
from settlement.services.provisioning import (
    provision_all_books,
    provision_matrix_set,
    provision_run,
    required_allowance,
)
from tests.settlement.test_close_world import D, World, utc
from tests.settlement.test_exposure import MATRIX, PROVISION_AT, REPORT_AT, pay, risk_world_build


@pytest.fixture
def risk_world(db: None) -> World:
    return risk_world_build()


OCT_1 = date(2026, 10, 1)


def matrix_for_all_books(world: World) -> None:
    for book in (world.book, world.alpha.own_book, world.beta.own_book):
        provision_matrix_set(book=book, rates=MATRIX, effective_from=OCT_1)


def legs(entry: Any) -> set[tuple[str, str, D]]:
    return {(p.ledger_account.code, p.side, p.amount) for p in Posting.objects.filter(entry=entry)}


def test_the_public_scenario_allowance_is_32_60(risk_world: World) -> None:
    w = risk_world
    matrix_for_all_books(w)
    for book in (w.book, w.alpha.own_book, w.beta.own_book):
        provision_run(book=book, as_of=PROVISION_AT)
    # 652 in 31-60 at 5% = 32.60; alpha's and beta's books have nothing open.
    assert allowance_balance(book=w.book, currency="USD", as_of=REPORT_AT) == D("32.60")
    assert allowance_balance(book=w.alpha.own_book, currency="USD") == D(0)
    assert allowance_balance(book=w.beta.own_book, currency="USD") == D(0)
    run = ProvisionRun.objects.get(book=w.book)
    assert (run.label, run.receivables, run.required, run.balance_before, run.change) == (
        "2026-12",
        D("652.00"),
        D("32.60"),
        D(0),
        D("32.60"),
    )
    assert legs(run.entry) == {("bad_debt_expense", "debit", D("32.60")), ("allowance", "credit", D("32.60"))}
    # Nothing required and nothing held: a run row, no entry.
    assert ProvisionRun.objects.get(book=w.alpha.own_book).entry is None


def test_provisioning_twice_in_a_period_changes_nothing_the_second_time(risk_world: World) -> None:
    w = risk_world
    matrix_for_all_books(w)
    first = provision_run(book=w.book, as_of=PROVISION_AT)
    entries, postings = JournalEntry.objects.count(), Posting.objects.count()
    again = provision_run(book=w.book, as_of=PROVISION_AT)
    later = provision_run(book=w.book, as_of=utc("2026-12-31T23:30:00Z"))
    assert (JournalEntry.objects.count(), Posting.objects.count()) == (entries, postings)
    assert first.posted and not again.posted and not later.posted
    assert [line.replayed for line in again.lines] == [True]
    assert again.lines[0].required == first.lines[0].required == D("32.60")
    assert ProvisionRun.objects.filter(book=w.book).count() == 1


def test_the_next_month_posts_only_the_change_a_release_when_paid(risk_world: World) -> None:
    w = risk_world
    matrix_for_all_books(w)
    provision_run(book=w.book, as_of=PROVISION_AT)
    # alpha settles in January: nothing open, so the 32.60 held is released.
    pay(w.alpha, "652.00", "ALPHA-WIRE-2", "2027-01-15T00:00:00Z")
    result = provision_run(book=w.book, as_of=utc("2027-01-31T23:00:00Z"))
    line = result.lines[0]
    assert (result.period, line.required, line.balance_before, line.change) == (
        "2027-01",
        D(0),
        D("32.60"),
        D("-32.60"),
    )
    assert legs(JournalEntry.objects.get(pk=line.entry_id)) == {
        ("allowance", "debit", D("32.60")),
        ("bad_debt_expense", "credit", D("32.60")),
    }
    assert allowance_balance(book=w.book, currency="USD") == D(0)


def test_the_month_end_job_provisions_every_book_as_of_its_month_end(risk_world: World) -> None:
    w = risk_world
    matrix_for_all_books(w)
    results = provision_all_books(now=utc("2027-01-01T00:45:00Z"))
    assert [(r.book, r.period) for r in results] == [
        ("platform", "2026-12"),
        ("alpha", "2026-12"),
        ("beta", "2026-12"),
    ]
    assert allowance_balance(book=w.book, currency="USD") == D("32.60")
    entries = JournalEntry.objects.count()
    provision_all_books(now=utc("2027-01-02T00:45:00Z"))
    assert JournalEntry.objects.count() == entries


def test_without_a_matrix_nothing_is_posted(risk_world: World) -> None:
    entries = JournalEntry.objects.count()
    result = provision_run(book=risk_world.book, as_of=PROVISION_AT)
    assert (result.matrix_version, result.lines) == (None, [])
    assert JournalEntry.objects.count() == entries and not ProvisionRun.objects.exists()


def test_the_matrix_is_versioned_and_validated(risk_world: World) -> None:
    book = risk_world.book
    v1 = provision_matrix_set(book=book, rates=MATRIX, effective_from=OCT_1)
    assert provision_matrix_set(book=book, rates=MATRIX, effective_from=OCT_1).pk == v1.pk  # a replay
    v2 = provision_matrix_set(
        book=book, rates=MATRIX | {"31-60": D("0.10")}, effective_from=date(2026, 12, 1)
    )
    assert (v1.version, v2.version) == (1, 2)
    assert ProvisionMatrix.objects.filter(book=book).count() == 2  # the old version is kept
    # In force on 31 December: v2, so 652 x 10% = 65.20.
    provision_run(book=book, as_of=PROVISION_AT)
    assert allowance_balance(book=book, currency="USD") == D("65.20")
    assert ProvisionRun.objects.get(book=book).matrix_id == v2.pk
    refusals: list[dict[str, Any]] = [
        {"rates": MATRIX, "effective_from": date(2026, 11, 1)},  # before the latest version
        {"rates": {k: v for k, v in MATRIX.items() if k != "180+"}, "effective_from": OCT_1},
        {"rates": MATRIX | {"180+": D("1.5")}, "effective_from": date(2027, 1, 1)},
        {"rates": MATRIX | {"current": D("-0.01")}, "effective_from": date(2027, 1, 1)},
        {"rates": MATRIX, "effective_from": date(2027, 1, 1), "edges": (0, 30, 30)},
    ]
    for kwargs in refusals:
        with pytest.raises(ValidationFailed):
            provision_matrix_set(book=book, **kwargs)
    assert ProvisionMatrix.objects.filter(book=book).count() == 2


def test_the_required_allowance_is_rounded_once_not_per_bucket() -> None:
    # 0.10 x 5% = 0.005 in each of two buckets: once, 0.01; per bucket it would be 0.02.
    buckets = {"current": D("0.10"), "1-30": D("0.10")}
    rates = {"current": D("0.05"), "1-30": D("0.05")}
    assert required_allowance(buckets=buckets, rates=rates, currency="USD") == D("0.01")


amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
loss_rates = st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(amounts, loss_rates), min_size=1, max_size=6))
def test_required_allowance_is_the_exact_sum_rounded_half_up_once(rows: list[tuple[D, D]]) -> None:
    buckets = {f"b{i}": amount for i, (amount, _) in enumerate(rows)}
    rates = {f"b{i}": rate for i, (_, rate) in enumerate(rows)}
    required = required_allowance(buckets=buckets, rates=rates, currency="USD")
    exact = sum((a * r for a, r in rows), D(0))
    assert required == exact.quantize(D("0.01"), rounding=ROUND_HALF_UP)
    assert abs(required - exact) <= D("0.005")
    assert required.as_tuple().exponent == -2


def test_the_admin_adds_a_version_through_the_service_and_never_edits_one(
    risk_world: World, client: Any
) -> None:
    from django.contrib.auth.models import User

    admin_user = User.objects.create_superuser("finance", password="x")
    client.force_login(admin_user)
    book = risk_world.book
    form = {
        "book": book.pk,
        "effective_from": "2026-12-01",
        "edges_text": "0, 30, 60, 90, 180",
        "rates_text": "\n".join(f"{k}: {v}" for k, v in MATRIX.items()),
    }
    response = client.post("/admin/settlement/provisionmatrix/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    matrix = ProvisionMatrix.objects.get(book=book)
    assert (matrix.version, matrix.created_by, matrix.rates.get(bucket="31-60").rate) == (
        1,
        admin_user,
        D("0.05"),
    )
    # A missing bucket is a form error, and nothing is written.
    bad = form | {"rates_text": "current: 0.005", "effective_from": "2027-01-01"}
    response = client.post("/admin/settlement/provisionmatrix/add/", bad)
    assert response.status_code == 200 and "one rate per aging bucket" in response.content.decode()
    assert ProvisionMatrix.objects.filter(book=book).count() == 1
    # The change page shows the version read-only: posting to it changes nothing.
    page = client.get(f"/admin/settlement/provisionmatrix/{matrix.pk}/change/")
    assert page.status_code == 200
    client.post(
        f"/admin/settlement/provisionmatrix/{matrix.pk}/change/", form | {"effective_from": "2027-02-01"}
    )
    assert ProvisionMatrix.objects.get(pk=matrix.pk).effective_from == date(2026, 12, 1)


def test_the_beat_tasks_take_timestamps_and_call_the_services(risk_world: World) -> None:
    from distributor.celery import app
    from settlement.models import ExposureSnapshot
    from settlement.tasks import exposure_snapshot_all_task, provision_all_books_task

    matrix_for_all_books(risk_world)
    schedule = {job["task"] for job in app.conf.beat_schedule.values()}
    assert {"settlement.exposure_snapshot_all", "settlement.provision_all_books"} <= schedule
    assert provision_all_books_task.delay("2027-01-01T00:45:00+00:00").get() == 3
    assert allowance_balance(book=risk_world.book, currency="USD") == D("32.60")
    assert exposure_snapshot_all_task.delay("2027-01-01T00:20:00+00:00").get() == 3
    assert ExposureSnapshot.objects.get(book=risk_world.book).net == D("9419.0625")
