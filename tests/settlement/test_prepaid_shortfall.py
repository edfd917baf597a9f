"""§11.12: usage past a prepaid wallet is recorded, its shortfall is a receivable of the parent, and
the next close bills it on an invoice (settlement.services.prepaid_shortfalls)."""

from __future__ import annotations

from datetime import date

import pytest

from accounts.models import Account
from ledger.models import JournalEntry
from settlement.models import Invoice, InvoiceLineKind, InvoiceStatus, Statement
from settlement.services.close import close_run
from settlement.services.payments import payment_record
from tests.settlement.test_close_world import (
    NOV_1,
    D,
    World,
    ingest,
    lines_of,
    october_usage,
    utc,
    world_build,
)
from tests.settlement.test_invoicing import balance, issue_all


def devsolo_call(request_id: str, *, at: str, input_tokens: int, output_tokens: int = 0) -> dict[str, object]:
    # glm-5 at list + 5.5%: input 0.3165, output 2.69025 a million tokens.
    return {
        "request_id": request_id,
        "account": "devsolo",
        "model": "glm-5",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "occurred_at": at,
    }


def devsolo_overrun() -> None:
    """After october_usage (devsolo: 39.5625 of its 100.00): 80M input x 0.3165 = 25.32 and 20M
    output x 2.69025 = 53.805, 79.125 more, 118.6875 in October; the wallet pays 100 and 18.6875
    becomes a receivable."""
    ingest(
        [
            devsolo_call(
                "devsolo-big", at="2026-10-30T12:00:00Z", input_tokens=80_000_000, output_tokens=20_000_000
            )
        ],
        utc("2026-10-30T12:00:00Z"),
    )


@pytest.fixture
def world(db: None) -> World:
    w = world_build()
    october_usage(w)
    devsolo_overrun()
    return w


def devsolo_invoices() -> list[Invoice]:
    return list(Invoice.objects.filter(account__code="devsolo").order_by("period_start"))


def test_the_close_bills_the_shortfall_on_an_issued_invoice(world: World) -> None:
    cp = "account:devsolo"
    # Before the close: the drawdowns booked the receivable exactly, and revenue with it.
    assert balance(world.book, "receivables", cp) == D("18.6875")
    assert balance(world.book, "revenue", cp) == D("-118.6875")

    issue_all(world)

    statement = Statement.objects.get(account=world.devsolo, label="2026-10")
    assert (statement.opening, statement.topups, statement.usage, statement.closing) == (
        D(0),
        D(100),
        D(100),
        D(0),
    )
    [invoice] = devsolo_invoices()
    assert (invoice.label, invoice.status, invoice.issue_date, invoice.due_date) == (
        "2026-10",
        InvoiceStatus.ISSUED,
        date(2026, 11, 1),
        date(2026, 11, 30),  # period end + the account's 30 net days, as every invoice
    )
    # Issued by the close, before the postpaid drafts: the book's first number of the year.
    assert invoice.number == "PLATFORM-2026-000001"
    assert Invoice.objects.get(account=world.alpha).number == "PLATFORM-2026-000002"
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.open_amount) == (
        D("18.69"),
        D(0),
        D("18.69"),
        D("18.69"),
    )
    [line] = invoice.lines.all()
    assert (line.kind, line.exact_amount, line.amount) == (
        InvoiceLineKind.WALLET_SHORTFALL,
        D("18.6875"),
        D("18.69"),
    )
    assert lines_of(invoice) == [
        ("Prepaid usage beyond the wallet balance", "", None, None, D("18.69"), False)
    ]
    # The invoice's entry books only the rounding (+0.0025): receivables now hold its total.
    assert balance(world.book, "receivables", cp) == D("18.69")
    assert balance(world.book, "revenue", cp) == D("-118.69")

    # A rerun of the close (the next night) issues nothing twice and posts nothing more.
    entries = JournalEntry.objects.count()
    close_run(book=world.book, now=utc("2026-11-02T00:00:00Z"))
    assert len(devsolo_invoices()) == 1 and JournalEntry.objects.count() == entries

    # Paid like any invoice: the payment goes to it, the receivable is gone.
    payment_record(
        account=world.devsolo,
        amount=D("18.69"),
        currency="USD",
        received_at=utc("2026-11-03T00:00:00Z"),
        reference="WIRE-1",
    )
    invoice.refresh_from_db()
    assert (invoice.status, invoice.open_amount) == (InvoiceStatus.PAID, D(0))
    assert balance(world.book, "receivables", cp) == D(0)


def test_tax_and_a_rounding_down(world: World) -> None:
    Account.objects.filter(code="devsolo").update(tax_rate=D("0.06"))
    # 10 more input tokens: 18.6875 + 0.000003165 = 18.687503165, still 18.69; and 1.000.000 input
    # tokens on the 31st (0.3165): 19.004003165, rounded down to 19.00.
    ingest(
        [devsolo_call("devsolo-more", at="2026-10-31T08:00:00Z", input_tokens=1_000_010)],
        utc("2026-10-31T08:00:00Z"),
    )
    close_run(book=world.book, now=NOV_1)
    [invoice] = devsolo_invoices()
    # Tax on the rounded subtotal: 19.00 x 6% = 1.14.
    assert (invoice.subtotal, invoice.tax, invoice.total) == (D("19.00"), D("1.14"), D("20.14"))
    assert invoice.lines.get().exact_amount == D("19.004003165")
    cp = "account:devsolo"
    assert balance(world.book, "receivables", cp) == D("20.14")
    # Revenue gives back the 0.004003165 rounded away; tax payable holds the tax.
    assert balance(world.book, "revenue", cp) == D("-119.00")
    assert balance(world.book, "tax_payable") == D("-1.14")


def test_late_drawdowns_and_residues_wait_for_the_next_close(world: World) -> None:
    close_run(book=world.book, now=NOV_1)
    assert [i.total for i in devsolo_invoices()] == [D("18.69")]
    # A late October call arriving on 5 November is drawn when it arrives (§11.4): November's.
    # 10 input tokens: 0.000003165, which rounds to 0.00, so November bills nothing.
    ingest(
        [devsolo_call("devsolo-late", at="2026-10-31T23:00:00Z", input_tokens=10)],
        utc("2026-11-05T00:00:00Z"),
    )
    close_run(book=world.book, now=utc("2026-12-01T00:00:00Z"))
    assert [i.label for i in devsolo_invoices()] == ["2026-10"]
    # December's usage (0.3165) bills the residue with it: 0.316503165, 0.32.
    ingest(
        [devsolo_call("devsolo-dec", at="2026-12-10T00:00:00Z", input_tokens=1_000_000)],
        utc("2026-12-10T00:00:00Z"),
    )
    close_run(book=world.book, now=utc("2027-01-01T00:00:00Z"))
    invoices = devsolo_invoices()
    assert [(i.label, i.number, i.total) for i in invoices] == [
        ("2026-10", "PLATFORM-2026-000001", D("18.69")),
        ("2026-12", "PLATFORM-2027-000001", D("0.32")),
    ]
    assert invoices[1].lines.get().exact_amount == D("0.316503165")
    assert balance(world.book, "receivables", "account:devsolo") == D("19.01")


def test_no_shortfall_no_invoice(db: None) -> None:
    world = world_build()
    october_usage(world)
    issue_all(world)
    assert devsolo_invoices() == []
    assert Statement.objects.get(account=world.devsolo, label="2026-10").closing == D("60.4375")
