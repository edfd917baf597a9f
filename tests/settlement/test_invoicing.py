"""Issuing (§7, §11.4): gapless numbers, postings in both books of the hop, rollups marked billed,
late usage (re-rated in grace, a late line after issue), and the database refusing edits."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Min, Sum
from django.db.utils import IntegrityError
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from accounts.services import account_update
from ledger.models import AccountBalance, JournalEntry
from settlement.models import (
    Invoice,
    InvoiceStatus,
    InvoiceUsage,
    NumberCounter,
    UsageAccrual,
    UsageRollup,
)
from settlement.selectors import unbilled_by_payer
from settlement.services.close import close_run
from settlement.services.invoicing import drafts_issue_due, invoice_issue, manual_charge_record
from tests.settlement.test_close_world import (
    NOV_1,
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
    w = world_build()
    october_usage(w, devsolo_calls=10)
    return w


def balance(book: object, code: str, counterparty: str = "") -> Decimal:
    """Debits minus credits of one ledger account and counterparty."""
    row = AccountBalance.objects.filter(
        ledger_account__book=book, ledger_account__code=code, counterparty=counterparty
    ).first()
    return Decimal(0) if row is None else row.debits - row.credits


def issue_all(world: World, now: object = NOV_1) -> list[Invoice]:
    issued: list[Invoice] = []
    for book in (world.book, world.alpha.own_book, world.beta.own_book):
        issued += drafts_issue_due(book=book, now=now)
    return issued


def test_issue_numbers_posts_and_marks_rollups_billed(world: World) -> None:
    issued = issue_all(world)
    assert sorted(i.number for i in issued) == [
        "ALPHA-2026-000001",
        "BETA-2026-000001",
        "PLATFORM-2026-000001",
    ]
    acme = Invoice.objects.get(account=world.acme)
    assert acme.status == InvoiceStatus.ISSUED and acme.issue_date == date(2026, 11, 1)
    # beta's book: receivables from acme 1855 = revenue 1750 + tax 105.
    beta_book = world.beta.own_book
    assert balance(beta_book, "receivables", "account:acme") == D("1855")
    assert balance(beta_book, "revenue", "account:acme") == D("-1750")
    assert balance(beta_book, "tax_payable") == D("-105")
    # beta's own book also owes alpha its 1200 (cost of sales / upstream payables, counterparty alpha).
    assert balance(beta_book, "cost_of_sales", "account:alpha") == D("1200")
    assert balance(beta_book, "upstream_payables", "account:alpha") == D("-1200")
    # alpha's book: receivable from beta 1200, and it owes the root ("book:platform") 1152.
    assert balance(world.alpha.own_book, "receivables", "account:beta") == D("1200")
    assert balance(world.alpha.own_book, "upstream_payables", "book:platform") == D("-1152")
    assert balance(world.book, "receivables", "account:alpha") == D("1152")
    # Every postpaid rollup row is now billed in full: the issued invoices' usage rows add up to the
    # rollups per payer, and unbilled is zero.
    rated = dict(
        UsageRollup.objects.filter(prepaid=False)
        .values("payer_account_id")
        .annotate(total=Sum("amount"))
        .values_list("payer_account_id", "total")
    )
    billed = dict(
        InvoiceUsage.objects.exclude(invoice__status=InvoiceStatus.DRAFT)
        .values("payer_account_id")
        .annotate(total=Sum("amount"))
        .values_list("payer_account_id", "total")
    )
    assert rated == billed and sorted(rated.values()) == [D("1152"), D("1200"), D("1250")]
    assert unbilled_by_payer(payer_account_ids=rated) == {}


def test_rating_keeps_monthly_accruals_equal_to_the_daily_rollups(world: World) -> None:
    key = ("payer_account_id", "model_id", "token_class", "unit_price")
    daily = {
        (*row[:4], date(2026, 10, 1)): row[4:]
        for row in UsageRollup.objects.filter(prepaid=False)
        .values(*key)
        .annotate(first=Min("day"), tokens=Sum("tokens"), amount=Sum("amount"))
        .values_list(*key, "first", "tokens", "amount")
    }
    monthly = {
        row[:5]: row[5:]
        for row in UsageAccrual.objects.values_list(*key, "month", "first_day", "tokens", "amount")
    }
    assert monthly == daily and len(daily) == 12  # acme, beta and alpha at each hop, devsolo
    # acme's October of minimax-m2.5: 2,000M input tokens at 0.30 = 600.00; each later batch that
    # touches a row moves its revision by one.
    acme_input = UsageAccrual.objects.get(
        payer_account_id=world.acme.pk, model_id=world.models["minimax-m2.5"].pk, token_class="input"
    )
    assert (acme_input.tokens, acme_input.amount) == (2_000_000_000, D("600"))
    ingest(
        [UsageFactory(request_id="one-more", input_tokens=1_000_000, occurred_at="2026-10-20T10:00:00Z")],
        utc("2026-10-20T10:00:01Z"),
    )
    acme_input_after = UsageAccrual.objects.get(pk=acme_input.pk)
    assert acme_input_after.revision == acme_input.revision + 1
    assert (acme_input_after.tokens, acme_input_after.amount) == (2_001_000_000, D("600.3"))


def test_issuing_an_untouched_draft_neither_sums_nor_writes_the_usage_rows(world: World) -> None:
    close_run(book=world.beta.own_book, now=NOV_1)
    rollups_before = _row_versions("settlement_usagerollup")
    accruals_before = _row_versions("settlement_usageaccrual")
    with CaptureQueriesContext(connection) as queries:
        [issued] = drafts_issue_due(book=world.beta.own_book, now=NOV_1)
    assert issued.total == D("1855")
    # Nothing arrived since the draft: it is issued from its own usage rows, no month is summed.
    assert not [q["sql"] for q in queries if "WITH rated" in q["sql"]]
    assert _row_versions("settlement_usagerollup") == rollups_before
    assert _row_versions("settlement_usageaccrual") == accruals_before
    assert unbilled_by_payer(payer_account_ids=[world.acme.pk]) == {}


def test_a_draft_nothing_has_touched_is_issued_as_drawn(world: World) -> None:
    close_run(book=world.book, now=NOV_1)
    with CaptureQueriesContext(connection) as queries:
        [issued] = drafts_issue_due(book=world.book, now=NOV_1)
    # alpha's October (no charge, no late usage, terms unchanged): its lines and usage rows are not
    # even read back, let alone re-planned.
    assert issued.account_id == world.alpha.pk and issued.total == D("1152")
    read_back = [
        q["sql"] for q in queries if "WHERE invoice_id = ANY" in q["sql"] or "WITH rated" in q["sql"]
    ]
    assert read_back == []
    assert unbilled_by_payer(payer_account_ids=[world.alpha.pk]) == {}


def test_terms_changed_after_the_close_are_on_the_issued_invoice(world: World) -> None:
    close_run(book=world.book, now=NOV_1)
    # Finance sets alpha's tax rate to 10% between the close and the issue: 1152 + 115.20.
    account_update(account=Account.objects.get(pk=world.alpha.pk), tax_rate=D("0.10"))
    [issued] = drafts_issue_due(book=world.book, now=NOV_1)
    assert (issued.subtotal, issued.tax, issued.total) == (D("1152"), D("115.20"), D("1267.20"))


def _row_versions(table: str) -> list[tuple[int, str]]:
    with connection.cursor() as c:
        c.execute(f"SELECT id, xmin::text FROM {table} ORDER BY id")
        return list(c.fetchall())


def test_issuing_again_is_a_no_op(world: World) -> None:
    issue_all(world)
    entries = JournalEntry.objects.count()
    again = issue_all(world)
    assert again == [] and JournalEntry.objects.count() == entries
    acme = Invoice.objects.get(account=world.acme)
    assert invoice_issue(invoice=acme, now=NOV_1).number == acme.number


def test_a_draft_waits_for_its_grace_days(db: None) -> None:
    world = world_build(grace_days=3)
    october_usage(world, devsolo_calls=10)
    assert drafts_issue_due(book=world.beta.own_book, now=NOV_1) == []
    assert Invoice.objects.get(account=world.acme).status == InvoiceStatus.DRAFT
    # 1 Nov + 3 days = 4 Nov 00:00: due.
    [issued] = drafts_issue_due(book=world.beta.own_book, now=utc("2026-11-04T00:00:00Z"))
    assert issued.status == InvoiceStatus.ISSUED and issued.issue_date == date(2026, 11, 4)


def test_a_late_event_in_grace_re_rates_the_draft(db: None) -> None:
    world = world_build(grace_days=5)
    october_usage(world, devsolo_calls=10)
    close_run(book=world.beta.own_book, now=NOV_1)
    assert Invoice.objects.get(account=world.acme).total == D("1855")
    # An October call arrives on 3 November, inside the 5-day grace: 100M input x 0.30 = 30.00.
    ingest(
        [UsageFactory(request_id="late-1", input_tokens=100_000_000, occurred_at="2026-10-31T23:00:00Z")],
        utc("2026-11-03T00:00:00Z"),
    )
    [issued] = drafts_issue_due(book=world.beta.own_book, now=utc("2026-11-06T00:00:00Z"))
    # Re-rated into the October line: 2100M x 0.30 = 630; subtotal 1780, tax 106.80, total 1886.80.
    assert lines_of(issued)[0] == ("minimax-m2.5", "input", 2_100_000_000, D("0.3"), D("630.00"), False)
    assert (issued.subtotal, issued.tax, issued.total) == (D("1780"), D("106.80"), D("1886.80"))


def test_a_late_event_after_issue_goes_to_the_next_period_on_a_late_line(world: World) -> None:
    issue_all(world)
    # An October call reported on 5 November, after October was issued, and a November call.
    ingest(
        [
            UsageFactory(request_id="late-1", input_tokens=100_000_000, occurred_at="2026-10-31T23:00:00Z"),
            UsageFactory(request_id="nov-1", input_tokens=100_000_000, occurred_at="2026-11-10T00:00:00Z"),
        ],
        utc("2026-11-10T00:00:00Z"),
    )
    close_run(book=world.beta.own_book, now=utc("2026-12-01T00:00:00Z"))
    november = Invoice.objects.get(account=world.acme, label="2026-11")
    # November's own 100M x 0.30 = 30.00, and the late October 100M at its original 0.30 = 30.00.
    assert lines_of(november) == [
        ("minimax-m2.5", "input", 100_000_000, D("0.3"), D("30.00"), False),
        ("minimax-m2.5", "input", 100_000_000, D("0.3"), D("30.00"), True),
    ]
    # October's issued invoice is untouched.
    assert Invoice.objects.get(account=world.acme, label="2026-10").total == D("1855")


def test_a_charge_for_an_issued_period_goes_on_the_next_invoice(world: World) -> None:
    issue_all(world)
    manual_charge_record(
        account=world.acme, description="Extra support", amount=D("80.00"), at=utc("2026-10-25T00:00:00Z")
    )
    close_run(book=world.beta.own_book, now=utc("2026-12-01T00:00:00Z"))
    november = Invoice.objects.get(account=world.acme, label="2026-11")
    # 80.00 + 6% = 84.80
    assert lines_of(november) == [("Extra support", "", None, None, D("80.00"), False)]
    assert november.total == D("84.80")


def test_a_failed_issue_leaves_no_gap_in_the_numbers(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    close_run(book=world.beta.own_book, now=NOV_1)
    acme = Invoice.objects.get(account=world.acme)
    from settlement.services import invoicing

    def broken(**kwargs: object) -> None:
        raise RuntimeError("the ledger is down")

    monkeypatch.setattr(invoicing, "_invoice_post", broken)
    with pytest.raises(RuntimeError):
        invoice_issue(invoice=acme, now=NOV_1)
    acme.refresh_from_db()
    assert acme.status == InvoiceStatus.DRAFT and acme.number is None
    assert not NumberCounter.objects.filter(last__gt=0).exists()
    assert not InvoiceUsage.objects.exclude(invoice__status=InvoiceStatus.DRAFT).exists()
    monkeypatch.undo()
    assert invoice_issue(invoice=acme, now=NOV_1).number == "BETA-2026-000001"


def test_numbers_run_per_issuer_book_and_year(world: World) -> None:
    issue_all(world)
    ingest(
        [UsageFactory(request_id="nov", input_tokens=10_000_000, occurred_at="2026-11-03T00:00:00Z")],
        utc("2026-11-03T00:00:00Z"),
    )
    ingest(
        [UsageFactory(request_id="dec", input_tokens=10_000_000, occurred_at="2026-12-03T00:00:00Z")],
        utc("2026-12-03T00:00:00Z"),
    )
    issue_all(world, now=utc("2026-12-01T00:00:00Z"))
    issue_all(world, now=utc("2027-01-01T00:00:00Z"))
    numbers = list(
        Invoice.objects.filter(account=world.acme).order_by("period_start").values_list("number", flat=True)
    )
    assert numbers == ["BETA-2026-000001", "BETA-2026-000002", "BETA-2027-000001"]


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_edits_of_an_issued_invoice_and_its_lines() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    issue_all(world)
    acme = Invoice.objects.get(account=world.acme)
    refusals = [
        ("UPDATE settlement_invoice SET total = 1 WHERE id = %s", [acme.pk]),
        ("UPDATE settlement_invoice SET number = 'X' WHERE id = %s", [acme.pk]),
        ("UPDATE settlement_invoice SET status = 'draft' WHERE id = %s", [acme.pk]),
        ("DELETE FROM settlement_invoice WHERE id = %s", [acme.pk]),
        ("UPDATE settlement_invoiceline SET amount = 1 WHERE invoice_id = %s", [acme.pk]),
        ("DELETE FROM settlement_invoiceline WHERE invoice_id = %s", [acme.pk]),
        (
            "INSERT INTO settlement_invoiceline (invoice_id, position, kind, description, model_code,"
            " token_class, late, exact_amount, amount) VALUES (%s, 99, 'charge', 'x', '', '', false, 1, 1)",
            [acme.pk],
        ),
        # What the invoice bills of the usage is as fixed as its lines.
        ("UPDATE settlement_invoiceusage SET amount = 1 WHERE invoice_id = %s", [acme.pk]),
        ("DELETE FROM settlement_invoiceusage WHERE invoice_id = %s", [acme.pk]),
        (
            "INSERT INTO settlement_invoiceusage (invoice_id, payer_account_id, month, first_day, model_id,"
            " model_code, token_class, unit_price, tokens, amount)"
            " SELECT invoice_id, payer_account_id, month, first_day, model_id, model_code, token_class,"
            " unit_price, 1, 1 FROM settlement_invoiceusage WHERE invoice_id = %s LIMIT 1",
            [acme.pk],
        ),
    ]
    for sql, params in refusals:
        with (
            pytest.raises(IntegrityError, match="issued|cannot change"),
            transaction.atomic(),
            connection.cursor() as c,
        ):
            c.execute(sql, params)
    # Status and the paid amount may still move (payments do this).
    with connection.cursor() as c:
        c.execute(
            "UPDATE settlement_invoice SET paid_amount = 1, status = 'partially_paid' WHERE id = %s",
            [acme.pk],
        )
    acme.refresh_from_db()
    assert acme.total == D("1855") and acme.status == "partially_paid"
