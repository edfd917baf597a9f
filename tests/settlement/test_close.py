"""The close (§7, §11.1, §11.2, §11.13): periods in the book's zone, drafts derived from rollups,
manual charges, commitment shortfall, statements, idempotent reruns."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from settlement.models import CloseRun, Invoice, InvoiceLine, InvoiceStatus, PeriodKind, Statement
from settlement.services.close import close_run
from settlement.services.invoicing import (
    book_zone,
    latest_ended,
    period_from_label,
    period_of,
)
from tests.settlement.test_close_world import (
    NOV_1,
    T0,
    D,
    UsageFactory,
    World,
    ingest,
    lines_of,
    october_usage,
    utc,
    world_build,
)


@pytest.fixture
def world(db: None) -> World:
    return world_build()


def invoice_of(account: object) -> Invoice:
    return Invoice.objects.get(account=account)


def test_periods_are_calendar_months_and_quarters_with_labels() -> None:
    october = period_of(PeriodKind.MONTH, date(2026, 10, 17))
    assert (october.start, october.end, october.label) == (date(2026, 10, 1), date(2026, 10, 31), "2026-10")
    q4 = period_of(PeriodKind.QUARTER, date(2026, 11, 30))
    assert (q4.start, q4.end, q4.label) == (date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
    assert q4.following().label == "2027-Q1" and october.preceding().label == "2026-09"
    assert period_from_label("2026-Q4") == q4 and period_from_label("2026-10") == october


def test_a_shanghai_book_closes_october_at_16_utc_on_the_31st(db: None) -> None:
    from ledger.services import book_create

    book = book_create(code="sh", name="SH", currency="CNY", timezone="Asia/Shanghai")
    tz = book_zone(book)
    october = period_of(PeriodKind.MONTH, date(2026, 10, 1))
    # Midnight of 1 November in UTC+8 is 16:00 UTC on 31 October.
    assert october.ends_at(tz) == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert latest_ended(PeriodKind.MONTH, datetime(2026, 10, 31, 15, 59, tzinfo=UTC), tz).label == "2026-09"
    assert latest_ended(PeriodKind.MONTH, datetime(2026, 10, 31, 16, 0, tzinfo=UTC), tz).label == "2026-10"


def test_october_close_draws_the_scenario_drafts_at_every_hop(world: World) -> None:
    october_usage(world)
    runs = close_run(book=world.book, now=NOV_1)
    close_run(book=world.alpha.own_book, now=NOV_1)
    close_run(book=world.beta.own_book, now=NOV_1)
    assert [(r.label, r.status) for r in runs] == [("2026-10", "done")]

    acme = invoice_of(world.acme)
    assert acme.status == InvoiceStatus.DRAFT and acme.issuer_book == world.beta.own_book
    # beta bills acme at list: 2000M x 0.30 = 600, 500M x 1.10 = 550, 10M x 5 = 50, 2M x 25 = 50,
    # plus the 500.00 workshop: subtotal 1750, tax 6% = 105, total 1855, due 31 Oct + 15 days.
    assert lines_of(acme) == [
        ("minimax-m2.5", "input", 2_000_000_000, D("0.3"), D("600.00"), False),
        ("minimax-m2.5", "output", 500_000_000, D("1.1"), D("550.00"), False),
        ("claude-opus-4.6", "input", 10_000_000, D("5"), D("50.00"), False),
        ("claude-opus-4.6", "output", 2_000_000, D("25"), D("50.00"), False),
        ("Prompt engineering workshop", "", None, None, D("500.00"), False),
    ]
    assert (acme.subtotal, acme.tax, acme.total) == (D("1750"), D("105"), D("1855"))
    assert acme.due_date == date(2026, 11, 15) and acme.label == "2026-10"

    # alpha bills beta at list - 4%: 576 + 528 + 48 (override 4.80 is alpha's; beta pays 5 x 0.96) + 48 = 1200.
    beta = invoice_of(world.beta)
    assert beta.issuer_book == world.alpha.own_book and beta.total == D("1200")
    # the root bills alpha at list - 8% with the 4.80 override: 552 + 506 + 48 + 46 = 1152, due 30 Nov.
    alpha = invoice_of(world.alpha)
    assert (
        alpha.issuer_book == world.book and alpha.total == D("1152") and alpha.due_date == date(2026, 11, 30)
    )
    assert [ln[4] for ln in lines_of(alpha)] == [D("552.00"), D("506.00"), D("48.00"), D("46.00")]
    # devsolo is prepaid: a statement, no invoice.
    assert not Invoice.objects.filter(account=world.devsolo).exists()
    statement = Statement.objects.get(account=world.devsolo)
    assert statement.label == "2026-10"


def test_closing_twice_changes_nothing(world: World) -> None:
    october_usage(world, devsolo_calls=10)
    close_run(book=world.beta.own_book, now=NOV_1)
    first = [(i.pk, i.drafted_at, i.total) for i in Invoice.objects.order_by("pk")]
    line_ids = list(InvoiceLine.objects.order_by("pk").values_list("pk", flat=True))
    close_run(book=world.beta.own_book, now=NOV_1)
    assert [(i.pk, i.drafted_at, i.total) for i in Invoice.objects.order_by("pk")] == first
    assert list(InvoiceLine.objects.order_by("pk").values_list("pk", flat=True)) == line_ids
    assert CloseRun.objects.filter(book=world.beta.own_book).count() == 1


def test_a_period_with_nothing_to_bill_draws_no_invoice(world: World) -> None:
    runs = close_run(book=world.book, now=NOV_1)
    assert runs[0].status == "done"
    assert not Invoice.objects.exists()
    # devsolo had a 100.00 top-up in October: that is activity, so it gets a statement...
    assert Statement.objects.filter(account=world.devsolo, label="2026-10").exists()
    # ...but September had zero opening and no activity: no statement (§11.1).
    close_run(book=world.book, now=datetime(2026, 10, 1, tzinfo=UTC))
    assert not Statement.objects.filter(label="2026-09").exists()


def test_commitment_shortfall_tops_usage_up_to_the_monthly_minimum(db: None) -> None:
    world = world_build(acme_commitment=D("2000.00"))
    october_usage(world, devsolo_calls=10)
    close_run(book=world.beta.own_book, now=NOV_1)
    acme = invoice_of(world.acme)
    # Usage lines 600 + 550 + 50 + 50 = 1250 < 2000: shortfall 750. The workshop does not count
    # toward the commitment (§11.2). Subtotal 1250 + 500 + 750 = 2500, tax 6% = 150, total 2650.
    assert lines_of(acme)[-1] == ("Commitment shortfall", "", None, None, D("750.00"), False)
    assert (acme.subtotal, acme.tax, acme.total) == (D("2500"), D("150"), D("2650"))


def test_a_commitment_alone_draws_an_invoice_without_usage(db: None) -> None:
    world = world_build(acme_commitment=D("99.99"))
    close_run(book=world.beta.own_book, now=NOV_1)
    acme = invoice_of(world.acme)
    # No usage: the whole 99.99 is shortfall; tax 99.99 x 6% = 5.9994 -> 6.00; total 105.99.
    assert lines_of(acme) == [("Commitment shortfall", "", None, None, D("99.99"), False)]
    assert (acme.tax, acme.total) == (D("6.00"), D("105.99"))


def test_a_mid_period_price_change_splits_the_line_and_an_unchanged_price_does_not(world: World) -> None:
    from accounts.services import price_list_set

    # On 20 Oct beta gives acme 10% off: minimax input 0.30 -> 0.27. Then on 25 Oct a new version
    # with the same 10% leaves the unit price alone: no further split (§11.13).
    price_list_set(
        account=world.acme, effective_from=utc("2026-10-20T00:00:00Z"), rule="discount", rate=D("0.10")
    )
    price_list_set(
        account=world.acme, effective_from=utc("2026-10-25T00:00:00Z"), rule="discount", rate=D("0.10")
    )
    ingest(
        [
            UsageFactory(input_tokens=1_000_000_000, occurred_at="2026-10-10T00:00:00Z"),
            UsageFactory(input_tokens=1_000_000_000, occurred_at="2026-10-22T00:00:00Z"),
            UsageFactory(input_tokens=1_000_000_000, occurred_at="2026-10-27T00:00:00Z"),
        ],
        utc("2026-10-28T00:00:00Z"),
    )
    close_run(book=world.beta.own_book, now=NOV_1)
    # 1000M x 0.30 = 300.00; 2000M x 0.27 = 540.00 (two price versions, one unit price, one line).
    assert lines_of(invoice_of(world.acme)) == [
        ("minimax-m2.5", "input", 1_000_000_000, D("0.3"), D("300.00"), False),
        ("minimax-m2.5", "input", 2_000_000_000, D("0.27"), D("540.00"), False),
    ]


def test_a_line_is_rounded_once_half_up_and_a_zero_line_is_not_printed(world: World) -> None:
    ingest(
        [
            # 1,234,567 x 0.30 / 1M = 0.3703701 each, three times: 1.1111103 -> 1.11 (not 0.37 x 3 = 1.11
            # by luck; the exact sum is what is rounded).
            UsageFactory(input_tokens=1_234_567, occurred_at="2026-10-03T00:00:00Z"),
            UsageFactory(input_tokens=1_234_567, occurred_at="2026-10-04T00:00:00Z"),
            UsageFactory(input_tokens=1_234_567, occurred_at="2026-10-05T00:00:00Z"),
            # 4,000 x 1.10 / 1M = 0.0044 -> 0.00: not printed.
            UsageFactory(output_tokens=4_000, occurred_at="2026-10-05T00:00:00Z"),
        ],
        utc("2026-10-06T00:00:00Z"),
    )
    close_run(book=world.beta.own_book, now=NOV_1)
    acme = invoice_of(world.acme)
    assert lines_of(acme) == [("minimax-m2.5", "input", 3_703_701, D("0.3"), D("1.11"), False)]
    assert acme.lines.get().exact_amount == D("1.1111103")
    # tax 1.11 x 6% = 0.0666 -> 0.07.
    assert (acme.tax, acme.total) == (D("0.07"), D("1.18"))


def test_quarterly_accounts_close_at_the_quarter_end(world: World) -> None:
    from accounts.services import account_create, price_list_set

    q = account_create(
        root_book=world.book,
        code="qco",
        name="Quarterly Co",
        kind="customer",
        currency="USD",
        terms="quarterly",
        net_days=10,
        credit_limit=D(1000),
    )
    price_list_set(account=q, effective_from=T0, rule="discount", rate=D("0"))
    ingest(
        [UsageFactory(account="qco", input_tokens=10_000_000, occurred_at="2026-11-05T00:00:00Z")],
        utc("2026-11-05T00:00:00Z"),
    )
    close_run(book=world.book, now=utc("2026-12-01T00:00:00Z"))
    assert not Invoice.objects.filter(account=q).exists()  # Q4 has not ended on 1 December
    runs = close_run(book=world.book, now=utc("2027-01-01T00:00:00Z"))
    assert sorted(r.label for r in runs) == ["2026-12", "2026-Q4"]
    invoice = Invoice.objects.get(account=q)
    # 10M x 0.30 = 3.00, due 31 Dec + 10 days.
    assert (invoice.label, invoice.total, invoice.due_date) == ("2026-Q4", D("3.00"), date(2027, 1, 10))
    assert Decimal(invoice.total) == D("3")
