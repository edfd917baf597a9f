"""Write-offs (§9, §11.10, §11.14): a controller's action, permission-guarded, against the
allowance first; refusals change nothing; a later payment is a recovery that reverses it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from distributor.errors import PermissionRefused, ValidationFailed
from ledger.models import JournalEntry, Posting
from ledger.selectors import account_balance
from settlement.models import Invoice, InvoiceStatus, WriteOff
from settlement.risk_selectors import aging, allowance_balance
from settlement.services.provisioning import invoice_write_off, provision_matrix_set, provision_run
from tests.settlement.test_close_world import D, World, utc
from tests.settlement.test_exposure import MATRIX, PROVISION_AT, pay, risk_world_build
from tests.settlement.test_provisioning import OCT_1


@pytest.fixture
def risk_world(db: None) -> World:
    return risk_world_build()


WRITE_OFF_AT = utc("2027-01-05T00:00:00Z")


def bal(book: Any, code: str, counterparty: str | None = None) -> D:
    return account_balance(book=book, account_code=code, currency="USD", counterparty=counterparty)


def legs(entry: Any) -> set[tuple[str, str, D]]:
    return {(p.ledger_account.code, p.side, p.amount) for p in Posting.objects.filter(entry=entry)}


@pytest.fixture
def provisioned(risk_world: World) -> World:
    provision_matrix_set(book=risk_world.book, rates=MATRIX, effective_from=OCT_1)
    provision_run(book=risk_world.book, as_of=PROVISION_AT)
    return risk_world


@pytest.fixture
def controller(db: None) -> User:
    user = User.objects.create_user("controller", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="write_off_invoice"))
    return User.objects.get(pk=user.pk)  # fresh: permissions are cached per instance


def alpha_invoice(world: World) -> Invoice:
    return Invoice.objects.get(account=world.alpha)


def test_a_write_off_uses_the_allowance_first_and_expenses_the_rest(
    provisioned: World, controller: User
) -> None:
    w = provisioned
    done = invoice_write_off(invoice=alpha_invoice(w), by=controller, at=WRITE_OFF_AT, reason="insolvent")
    # 652 open: 32.60 from the allowance, 619.40 to bad-debt expense.
    assert (done.amount, done.against_allowance, done.expensed, done.by) == (
        D("652.00"),
        D("32.60"),
        D("619.40"),
        controller,
    )
    assert legs(done.entry) == {
        ("allowance", "debit", D("32.60")),
        ("bad_debt_expense", "debit", D("619.40")),
        ("receivables", "credit", D("652.00")),
    }
    invoice = alpha_invoice(w)
    assert (invoice.status, invoice.written_off_amount, invoice.open_amount) == (
        InvoiceStatus.WRITTEN_OFF,
        D("652.00"),
        D(0),
    )
    assert bal(w.book, "receivables", "account:alpha") == D(0)
    assert allowance_balance(book=w.book, currency="USD") == D(0)
    # 32.60 provisioned in December + 619.40 now.
    assert bal(w.book, "bad_debt_expense") == D("652.00")
    # §11.14: alpha's own book still owes the root 652.
    assert bal(w.alpha.own_book, "upstream_payables") == D("652.00")
    assert set(aging(book=w.book, currency="USD", as_of=WRITE_OFF_AT).buckets.values()) == {D(0)}
    # Aged as of before the write-off, the debt is still there.
    assert aging(book=w.book, currency="USD", as_of=utc("2027-01-04T00:00:00Z")).buckets["31-60"] == D(
        "652.00"
    )


def snapshot(world: World) -> tuple[Any, ...]:
    invoices = tuple(Invoice.objects.order_by("pk").values_list("status", "written_off_amount"))
    return invoices, JournalEntry.objects.count(), WriteOff.objects.count()


def test_refusals_are_clear_and_change_nothing(provisioned: World, controller: User) -> None:
    w = provisioned
    before = snapshot(w)
    clerk = User.objects.create_user("clerk", is_staff=True)
    with pytest.raises(PermissionRefused, match="Can write off invoices"):
        invoice_write_off(invoice=alpha_invoice(w), by=clerk, at=WRITE_OFF_AT)
    beta_invoice = Invoice.objects.get(account=w.beta)  # paid in full on 5 December
    with pytest.raises(ValidationFailed, match="is paid"):
        invoice_write_off(invoice=beta_invoice, by=controller, at=WRITE_OFF_AT)
    assert snapshot(w) == before
    invoice_write_off(invoice=alpha_invoice(w), by=None, at=WRITE_OFF_AT)
    with pytest.raises(ValidationFailed, match="is written_off"):
        invoice_write_off(invoice=alpha_invoice(w), by=None, at=WRITE_OFF_AT)


def test_a_draft_cannot_be_written_off(db: None) -> None:
    from settlement.services.close import close_run
    from tests.settlement.test_close_world import NOV_1, october_usage, world_build

    w = world_build()
    october_usage(w, devsolo_calls=10)
    close_run(book=w.book, now=NOV_1)
    draft = Invoice.objects.get(account=w.alpha)
    entries = JournalEntry.objects.count()
    with pytest.raises(ValidationFailed, match="draft"):
        invoice_write_off(invoice=draft, by=None, at=NOV_1)
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.DRAFT
    assert JournalEntry.objects.count() == entries


def test_a_full_recovery_reverses_the_write_off_and_settles_the_invoice(provisioned: World) -> None:
    w = provisioned
    invoice_write_off(invoice=alpha_invoice(w), by=None, at=WRITE_OFF_AT)
    pay(w.alpha, "652.00", "ALPHA-WIRE-2", "2027-01-20T00:00:00Z")
    write_off = WriteOff.objects.get()
    recovery = write_off.recoveries.get()
    # Reversed in the mirror order: the 619.40 expensed first, then the 32.60 of allowance.
    assert (recovery.amount, recovery.to_expense, recovery.to_allowance) == (
        D("652.00"),
        D("619.40"),
        D("32.60"),
    )
    assert legs(recovery.entry) == {
        ("receivables", "debit", D("652.00")),
        ("bad_debt_expense", "credit", D("619.40")),
        ("allowance", "credit", D("32.60")),
    }
    invoice = alpha_invoice(w)
    assert (invoice.status, invoice.paid_amount, invoice.written_off_amount) == (
        InvoiceStatus.PAID,
        D("1152.00"),
        D(0),
    )
    assert write_off.recovered == D("652.00")
    # The receivable was reinstated and then paid: zero. The allowance is back to the 32.60 of
    # December (January's run will release it); the expense is back to December's 32.60.
    assert bal(w.book, "receivables", "account:alpha") == D(0)
    assert allowance_balance(book=w.book, currency="USD") == D("32.60")
    assert bal(w.book, "bad_debt_expense") == D("32.60")
    # alpha's own book: the payable it still carried is settled now.
    assert bal(w.alpha.own_book, "upstream_payables") == D(0)
    # No credit balance was left over.
    assert bal(w.book, "customer_deposits", "account:alpha") == D(0)


def test_a_partial_recovery_leaves_the_rest_written_off(provisioned: World) -> None:
    w = provisioned
    invoice_write_off(invoice=alpha_invoice(w), by=None, at=WRITE_OFF_AT)
    pay(w.alpha, "300.00", "ALPHA-WIRE-2", "2027-01-20T00:00:00Z")
    invoice = alpha_invoice(w)
    # 300 recovered, all of it against the 619.40 expensed; 352 stays written off.
    assert (invoice.status, invoice.paid_amount, invoice.written_off_amount) == (
        InvoiceStatus.WRITTEN_OFF,
        D("800.00"),
        D("352.00"),
    )
    assert WriteOff.objects.get().recoveries.get().to_expense == D("300.00")
    assert bal(w.book, "bad_debt_expense") == D("352.00")  # 32.60 + 619.40 - 300
    assert bal(w.book, "receivables", "account:alpha") == D(0)
    # Named periods reach a written-off invoice too: the rest, 352, closes it.
    from settlement.services.payments import payment_record

    payment_record(
        account=w.alpha,
        amount=D("352.00"),
        currency="USD",
        received_at=utc("2027-01-25T00:00:00Z"),
        reference="ALPHA-WIRE-3",
        invoice_periods=["2026-10"],
    )
    invoice = alpha_invoice(w)
    assert (invoice.status, invoice.written_off_amount) == (InvoiceStatus.PAID, D(0))
    # 300 then 52 of expense, then 32.60 ... 352 - 319.40 = 32.60 back to the allowance.
    assert allowance_balance(book=w.book, currency="USD") == D("32.60")


def test_without_an_allowance_the_whole_write_off_is_expensed(risk_world: World) -> None:
    done = invoice_write_off(invoice=alpha_invoice(risk_world), by=None, at=WRITE_OFF_AT)
    assert (done.against_allowance, done.expensed) == (D(0), D("652.00"))
    assert legs(done.entry) == {
        ("bad_debt_expense", "debit", D("652.00")),
        ("receivables", "credit", D("652.00")),
    }


def test_the_admin_action_needs_the_permission(provisioned: World, controller: User, client: Any) -> None:
    w = provisioned
    invoice = alpha_invoice(w)
    clerk = User.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    data = {"action": "write_off_selected", "_selected_action": [invoice.pk]}
    client.force_login(clerk)
    client.post("/admin/settlement/invoice/", data)
    assert alpha_invoice(w).status == InvoiceStatus.PARTIALLY_PAID  # the action is not offered
    controller.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(controller)
    response = client.post("/admin/settlement/invoice/", data, follow=True)
    assert response.status_code == 200
    assert alpha_invoice(w).status == InvoiceStatus.WRITTEN_OFF
    assert WriteOff.objects.get().by == controller


@pytest.mark.django_db(transaction=True)
def test_concurrent_write_off_and_provisioning_post_once_each() -> None:
    """Real parallel connections: two controllers writing off the same invoice and two month-end
    runs at once yield one write-off and one provision entry."""
    import threading

    from django.db import connections

    from settlement.models import ProvisionRun

    w = risk_world_build()
    provision_matrix_set(book=w.book, rates=MATRIX, effective_from=OCT_1)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write_off() -> None:
        try:
            barrier.wait()
            invoice_write_off(invoice=alpha_invoice(w), by=None, at=WRITE_OFF_AT)
        except ValidationFailed as exc:  # the loser is told it is already written off
            errors.append(exc)
        finally:
            connections.close_all()

    def provision() -> None:
        try:
            barrier.wait()
            provision_run(book=w.book, as_of=PROVISION_AT)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=t) for t in (write_off, write_off, provision, provision)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 1 and "written_off" in str(errors[0])
    assert WriteOff.objects.count() == 1 and ProvisionRun.objects.filter(book=w.book).count() == 1
    assert JournalEntry.objects.filter(idempotency_key__startswith="provision:").count() == 1
    # Whatever the order, the books balance and the receivable is gone.
    assert bal(w.book, "receivables", "account:alpha") == D(0)
