"""Payments (§7): the scenario's three payments, oldest-first and named allocation, credit balances
consumed by the next invoice, replays, and postings in both books of the hop."""

from __future__ import annotations

import pytest

from distributor.errors import Conflict, ValidationFailed
from ledger.models import JournalEntry
from settlement.models import Invoice, InvoiceStatus, Payment
from settlement.services.close import close_run
from settlement.services.payments import credit_balance, payment_record
from tests.settlement.test_close_world import (
    NOV_1,
    D,
    UsageFactory,
    World,
    ingest,
    october_usage,
    utc,
    world_build,
)
from tests.settlement.test_invoicing import balance, issue_all


@pytest.fixture
def world(db: None) -> World:
    w = world_build()
    october_usage(w, devsolo_calls=10)
    issue_all(w)
    return w


def pay(
    account: object, amount: str, reference: str, at: str = "2026-11-10T00:00:00Z", **kw: object
) -> Payment:
    return payment_record(
        account=account, amount=D(amount), currency="USD", received_at=utc(at), reference=reference, **kw
    )


def test_the_scenario_payments_settle_acme_and_beta_and_part_of_alpha(world: World) -> None:
    pay(world.acme, "1855.00", "ACME-WIRE-1")
    pay(world.beta, "1200.00", "BETA-WIRE-1", "2026-12-05T00:00:00Z")
    pay(world.alpha, "500.00", "ALPHA-WIRE-1", "2026-12-10T00:00:00Z")
    by_code = {i.account.code: i for i in Invoice.objects.select_related("account")}
    assert (by_code["acme"].status, by_code["acme"].open_amount) == (InvoiceStatus.PAID, D(0))
    assert (by_code["beta"].status, by_code["beta"].open_amount) == (InvoiceStatus.PAID, D(0))
    # alpha owes 1152 and paid 500: 652 open.
    assert (by_code["alpha"].status, by_code["alpha"].open_amount) == (InvoiceStatus.PARTIALLY_PAID, D("652"))
    # The root's receivable from alpha is 652; alpha's payable to the root is 652 (§11.14 view).
    assert balance(world.book, "receivables", "account:alpha") == D("652")
    assert balance(world.alpha.own_book, "upstream_payables", "book:platform") == D("-652")
    # beta paid alpha: cleared in both books; alpha's cash +1200 - 500 = 700.
    assert balance(world.alpha.own_book, "receivables", "account:beta") == D(0)
    assert balance(world.beta.own_book, "upstream_payables", "account:alpha") == D(0)
    assert balance(world.beta.own_book, "receivables", "account:acme") == D(0)


def test_a_replayed_payment_is_a_no_op_and_a_changed_one_is_refused(world: World) -> None:
    first = pay(world.acme, "1000.00", "ACME-WIRE-1")
    entries = JournalEntry.objects.count()
    assert pay(world.acme, "1000.00", "ACME-WIRE-1").pk == first.pk
    assert JournalEntry.objects.count() == entries
    with pytest.raises(Conflict):
        pay(world.acme, "1000.01", "ACME-WIRE-1")
    # The same reference from another payer is a different payment.
    assert pay(world.beta, "10.00", "ACME-WIRE-1").pk != first.pk


def test_payments_are_refused_in_another_currency_or_below_the_minor_unit(world: World) -> None:
    with pytest.raises(ValidationFailed):
        payment_record(account=world.acme, amount=D("10"), currency="CNY", received_at=NOV_1, reference="x")
    with pytest.raises(ValidationFailed):
        pay(world.acme, "10.001", "y")


def test_an_overpayment_is_a_credit_balance_the_next_invoice_consumes(world: World) -> None:
    # acme pays 2000 for 1855: 145 is a credit balance, held as a deposit in beta's book and as a
    # prepayment in... acme has no book; beta's book shows it as acme's deposit.
    pay(world.acme, "2000.00", "ACME-WIRE-1")
    assert credit_balance(account=world.acme) == D("145")
    assert balance(world.beta.own_book, "customer_deposits", "account:acme") == D("-145")
    # November: 100M input x 0.30 = 30.00 + 6% = 31.80, consumed from the 145 at issue.
    ingest(
        [UsageFactory(request_id="nov", input_tokens=100_000_000, occurred_at="2026-11-03T00:00:00Z")],
        utc("2026-11-03T00:00:00Z"),
    )
    issue_all(world, now=utc("2026-12-01T00:00:00Z"))
    november = Invoice.objects.get(account=world.acme, label="2026-11")
    assert (november.total, november.status, november.open_amount) == (D("31.80"), InvoiceStatus.PAID, D(0))
    # 145 - 31.80 = 113.20 left.
    assert credit_balance(account=world.acme) == D("113.20")
    assert balance(world.beta.own_book, "customer_deposits", "account:acme") == D("-113.20")
    assert balance(world.beta.own_book, "receivables", "account:acme") == D(0)


def test_a_distributor_overpayment_is_a_prepayment_in_its_own_book(world: World) -> None:
    pay(world.beta, "1300.00", "BETA-WIRE-1")
    # 1200 settles the invoice; 100 excess: alpha holds it as beta's deposit, beta as a prepayment.
    assert balance(world.alpha.own_book, "customer_deposits", "account:beta") == D("-100")
    assert balance(world.beta.own_book, "upstream_prepayments", "account:alpha") == D("100")
    assert balance(world.beta.own_book, "cash", "account:alpha") == D("-1300")


def test_payments_go_oldest_first_unless_periods_are_named(world: World) -> None:
    ingest(
        [UsageFactory(request_id="nov", input_tokens=100_000_000, occurred_at="2026-11-03T00:00:00Z")],
        utc("2026-11-03T00:00:00Z"),
    )
    issue_all(world, now=utc("2026-12-01T00:00:00Z"))
    # Named: 31.80 to November first, the rest (68.20) to October.
    pay(world.acme, "100.00", "N-1", "2026-12-02T00:00:00Z", invoice_periods=["2026-11", "2026-10"])
    oct_, nov = Invoice.objects.filter(account=world.acme).order_by("period_start")
    assert (nov.status, oct_.paid_amount) == (InvoiceStatus.PAID, D("68.20"))
    # Oldest first: October (due 15 Nov) takes all of the next 100.
    pay(world.acme, "100.00", "N-2", "2026-12-03T00:00:00Z")
    oct_.refresh_from_db()
    assert oct_.paid_amount == D("168.20") and oct_.status == InvoiceStatus.PARTIALLY_PAID
    with pytest.raises(ValidationFailed):
        pay(world.acme, "1.00", "N-3", invoice_periods=["2026-09"])


def test_close_after_payment_keeps_paid_invoices_untouched(world: World) -> None:
    pay(world.acme, "1855.00", "ACME-WIRE-1")
    close_run(book=world.beta.own_book, now=NOV_1)
    assert Invoice.objects.get(account=world.acme).status == InvoiceStatus.PAID
