"""Prepaid top-ups (§7): cash into the wallet through the ledger, idempotent on the reference."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.selectors import wallet_balance
from accounts.services import price_list_set, topup_record
from distributor.errors import Conflict, ValidationFailed
from ledger.models import JournalEntry, Posting
from tests.accounts.factories import JAN_1, account, root_book

pytestmark = pytest.mark.django_db

OCT_1 = datetime(2026, 10, 1, tzinfo=UTC)


def test_topup_posts_cash_against_customer_deposits() -> None:
    root = root_book()
    devsolo = account(root, "devsolo", kind="customer", terms="prepaid")
    topup = topup_record(account=devsolo, amount=Decimal("100.00"), at=OCT_1, reference="CARD-0001")
    assert (topup.amount, topup.currency, topup.receipt_number) == (
        Decimal("100"),
        "USD",
        "platform-R2026-000001",
    )
    entry = topup.entry
    assert (entry.book_id, entry.source_type, entry.source_id) == (root.pk, "topup", "platform-R2026-000001")
    legs = {(p.ledger_account.code, p.side, p.amount, p.counterparty) for p in entry.postings.all()}
    assert legs == {
        ("cash", "debit", Decimal("100"), ""),
        ("customer_deposits", "credit", Decimal("100"), "account:devsolo"),
    }
    # 100.00 + 25.50 = 125.50 in the wallet; the second receipt is numbered next.
    second = topup_record(account=devsolo, amount=Decimal("25.50"), at=OCT_1, reference="CARD-0002")
    assert second.receipt_number == "platform-R2026-000002"
    assert wallet_balance(account=devsolo) == Decimal("125.50")


def test_topup_is_idempotent_on_its_reference() -> None:
    root = root_book()
    devsolo = account(root, "devsolo", kind="customer", terms="prepaid")
    first = topup_record(account=devsolo, amount=Decimal("100.00"), at=OCT_1, reference="CARD-0001")
    again = topup_record(account=devsolo, amount=Decimal("100"), at=OCT_1, reference="CARD-0001")
    assert again == first
    assert JournalEntry.objects.count() == 1 and Posting.objects.count() == 2
    with pytest.raises(Conflict, match="already recorded"):
        topup_record(account=devsolo, amount=Decimal("90.00"), at=OCT_1, reference="CARD-0001")
    assert wallet_balance(account=devsolo) == Decimal("100.00")


def test_topup_of_a_distributors_child_lands_in_the_distributors_book() -> None:
    root = root_book()
    alpha = account(root, "alpha")
    dev = account(root, "dev", parent=alpha, kind="customer", terms="prepaid")
    price_list_set(account=dev, effective_from=JAN_1, rule="markup", rate=Decimal("0.1"))
    topup = topup_record(account=dev, amount=Decimal("40.00"), at=OCT_1, reference="T-1")
    alpha.refresh_from_db()
    assert topup.entry.book == alpha.own_book
    assert topup.receipt_number == "alpha-R2026-000001"  # the distributor's own series
    assert wallet_balance(account=dev) == Decimal("40.00")


def test_topup_refusals() -> None:
    root = root_book()
    acme = account(root, "acme", kind="customer")
    devsolo = account(root, "devsolo", kind="customer", terms="prepaid")
    with pytest.raises(ValidationFailed, match="only prepaid accounts take top-ups"):
        topup_record(account=acme, amount=Decimal("10.00"), at=OCT_1, reference="X")
    with pytest.raises(ValidationFailed, match="more places than USD allows"):
        topup_record(account=devsolo, amount=Decimal("10.005"), at=OCT_1, reference="X")
    with pytest.raises(ValidationFailed, match="positive"):
        topup_record(account=devsolo, amount=Decimal("0"), at=OCT_1, reference="X")
    with pytest.raises(ValidationFailed, match="decimal string"):
        topup_record(account=devsolo, amount=10.0, at=OCT_1, reference="X")  # type: ignore[arg-type]
    assert wallet_balance(account=devsolo) == Decimal(0)
    assert JournalEntry.objects.count() == 0
