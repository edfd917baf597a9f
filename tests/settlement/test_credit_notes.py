"""Credit notes (§7): their own gapless series, the mirror posting split across revenue and tax,
void as a full credit note, and the database refusing to edit one."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import IntegrityError

from distributor.errors import Conflict, ValidationFailed
from settlement.models import CreditNote, Invoice, InvoiceStatus
from settlement.services.credit_notes import credit_note_issue, invoice_void
from tests.settlement.test_close_world import NOV_1, D, World, october_usage, utc, world_build
from tests.settlement.test_invoicing import balance, issue_all
from tests.settlement.test_payments import pay


@pytest.fixture
def world(db: None) -> World:
    w = world_build()
    october_usage(w, devsolo_calls=10)
    issue_all(w)
    return w


def test_a_partial_credit_note_mirrors_the_invoice_in_proportion(world: World) -> None:
    acme = Invoice.objects.get(account=world.acme)
    note = credit_note_issue(
        invoice=acme,
        amount=D("106.00"),
        reason="Workshop ran short",
        now=utc("2026-11-05T00:00:00Z"),
        idempotency_key="cn-1",
    )
    # Tax share 106 x 105/1855 = 6.00; revenue 100.00.
    assert (note.number, note.subtotal, note.tax, note.total) == (
        "BETA-CN-2026-000001",
        D("100"),
        D("6"),
        D("106"),
    )
    acme.refresh_from_db()
    assert (acme.credited_amount, acme.open_amount, acme.status) == (
        D("106"),
        D("1749"),
        InvoiceStatus.ISSUED,
    )
    book = world.beta.own_book
    # 1855 - 106 = 1749 receivable; revenue 1750 - 100 = 1650; tax 105 - 6 = 99.
    assert balance(book, "receivables", "account:acme") == D("1749")
    assert balance(book, "revenue", "account:acme") == D("-1650")
    assert balance(book, "tax_payable") == D("-99")
    # Same key: the same note; same key, other amount: refused.
    assert (
        credit_note_issue(invoice=acme, amount=D("106.00"), reason="x", now=NOV_1, idempotency_key="cn-1")
        == note
    )
    with pytest.raises(Conflict):
        credit_note_issue(invoice=acme, amount=D("1.00"), reason="x", now=NOV_1, idempotency_key="cn-1")
    second = credit_note_issue(invoice=acme, amount=D("1.00"), reason="y", now=NOV_1, idempotency_key="cn-2")
    assert second.number == "BETA-CN-2026-000002"
    # The invoice series is separate: still one invoice number used in beta's book.
    assert acme.number == "BETA-2026-000001"


def test_a_credit_note_cannot_exceed_the_open_amount(world: World) -> None:
    acme = Invoice.objects.get(account=world.acme)
    pay(world.acme, "1800.00", "W-1")
    with pytest.raises(ValidationFailed):
        credit_note_issue(invoice=acme, amount=D("55.01"), reason="x", now=NOV_1, idempotency_key="k")
    credit_note_issue(invoice=acme, amount=D("55.00"), reason="x", now=NOV_1, idempotency_key="k")
    acme.refresh_from_db()
    assert (acme.status, acme.open_amount) == (InvoiceStatus.PAID, D(0))


def test_void_is_a_full_credit_note_and_reverses_both_books(world: World) -> None:
    beta_invoice = Invoice.objects.get(account=world.beta)
    note = invoice_void(invoice=beta_invoice, reason="Billed in error", now=NOV_1)
    beta_invoice.refresh_from_db()
    assert (note.total, beta_invoice.status, beta_invoice.open_amount) == (
        D("1200"),
        InvoiceStatus.VOID,
        D(0),
    )
    assert note.number == "ALPHA-CN-2026-000001"
    assert balance(world.alpha.own_book, "receivables", "account:beta") == D(0)
    assert balance(world.alpha.own_book, "revenue", "account:beta") == D(0)
    # beta's own book: the payable to alpha and the cost are reversed too.
    assert balance(world.beta.own_book, "upstream_payables", "account:alpha") == D(0)
    assert balance(world.beta.own_book, "cost_of_sales", "account:alpha") == D(0)
    assert invoice_void(invoice=beta_invoice, reason="again", now=NOV_1) == note
    with pytest.raises(ValidationFailed):
        credit_note_issue(invoice=beta_invoice, amount=D("1"), reason="x", now=NOV_1, idempotency_key="z")


def test_a_paid_invoice_cannot_be_voided(world: World) -> None:
    pay(world.acme, "10.00", "W-1")
    with pytest.raises(ValidationFailed):
        invoice_void(invoice=Invoice.objects.get(account=world.acme), reason="x", now=NOV_1)


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_edits_of_a_credit_note() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    issue_all(world)
    note = credit_note_issue(
        invoice=Invoice.objects.get(account=world.acme),
        amount=D("10.00"),
        reason="x",
        now=NOV_1,
        idempotency_key="k",
    )
    for sql in (
        "UPDATE settlement_creditnote SET total = 1 WHERE id = %s",
        "DELETE FROM settlement_creditnote WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="cannot change"),
            transaction.atomic(),
            connection.cursor() as c,
        ):
            c.execute(sql, [note.pk])
    assert CreditNote.objects.get(pk=note.pk).total == D("10")
