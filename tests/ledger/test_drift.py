"""The drift check (§8: balances are reconcilable at any time): cached AccountBalance rows against
the postings they summarize, and `manage.py ledger_check_balances` failing loudly on a difference."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ledger.models import AccountBalance, Book, LedgerAccount
from ledger.selectors import balance_drift
from tests.ledger.factories import BookFactory, at, receipt, sale

pytestmark = pytest.mark.django_db


@pytest.fixture
def book() -> Book:
    book = BookFactory(code="root")
    sale(book, "s1", "100.00", customer="account:acme", when=at(5))
    receipt(book, "r1", "60.00", customer="account:acme", when=at(10))
    sale(book, "s2", "7.00", customer="account:beta", currency="CNY", when=at(12))
    return book


def balance_row_id(book: Book, code: str, counterparty: str, currency: str) -> int:
    account = LedgerAccount.objects.get(book=book, code=code)
    return AccountBalance.objects.get(ledger_account=account, counterparty=counterparty, currency=currency).pk


def test_sound_books_show_no_drift_and_the_command_passes(book: Book) -> None:
    assert balance_drift() == []
    assert balance_drift(book=book) == []
    out = StringIO()
    call_command("ledger_check_balances", stdout=out)
    text = out.getvalue()
    # USD: Dr 100 + 60 = 160 each side; CNY: 7 each side.
    assert "trial balance root USD: Dr 160 Cr 160 difference 0" in text
    assert "trial balance root CNY: Dr 7 Cr 7 difference 0" in text
    assert "ledger balances agree with postings" in text


def test_a_corrupted_balance_row_is_reported_and_fails_the_command(book: Book) -> None:
    row = balance_row_id(book, "receivables", "account:acme", "USD")
    with connection.cursor() as cur:
        # Someone "fixes" acme's receivable by hand: credits 60 -> 50 (the balance would read 50, not 40).
        cur.execute("UPDATE ledger_accountbalance SET credits = 50 WHERE id = %s", [row])
    assert balance_drift(book=book) == [
        {
            "book": "root",
            "account_code": "receivables",
            "counterparty": "account:acme",
            "currency": "USD",
            "expected_debits": Decimal("100.00"),
            "expected_credits": Decimal("60.00"),
            "cached_debits": Decimal("100.00"),
            "cached_credits": Decimal("50.00"),
        }
    ]
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("ledger_check_balances", stdout=out)
    assert caught.value.returncode == 1
    assert (
        "DRIFT root:receivables [account:acme] USD: postings Dr 100 Cr 60, cached Dr 100 Cr 50"
        in out.getvalue()
    )
    # The trial balance, read from the same corrupted rows, is off by 10 too.
    assert "trial balance root USD: Dr 160 Cr 150 difference 10\n" in out.getvalue()
    assert "1 drifted balance row(s), 1 unbalanced trial balance(s)" in str(caught.value)


def test_postings_with_no_balance_row_and_a_balance_row_with_no_postings_are_drift(book: Book) -> None:
    missing = balance_row_id(book, "revenue", "", "CNY")
    revenue_cny = LedgerAccount.objects.get(book=book, code="revenue")
    with connection.cursor() as cur:
        cur.execute("DELETE FROM ledger_accountbalance WHERE id = %s", [missing])
        cur.execute(
            "INSERT INTO ledger_accountbalance (ledger_account_id, counterparty, currency, debits, credits)"
            " VALUES (%s, 'account:ghost', 'USD', 0, 3)",
            [revenue_cny.pk],
        )
    drift = balance_drift(book=book)
    assert [
        (d["account_code"], d["counterparty"], d["currency"], d["cached_credits"], d["expected_credits"])
        for d in drift
    ] == [
        ("revenue", "", "CNY", None, Decimal("7.00")),  # posted 7 CNY of revenue, no row at all
        ("revenue", "account:ghost", "USD", Decimal("3"), Decimal("0")),  # a row with nothing behind it
    ]


def test_the_command_can_check_one_book(book: Book) -> None:
    other = BookFactory(code="other")
    sale(other, "x", "1.00")
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE ledger_accountbalance SET debits = 2 WHERE id = %s",
            [balance_row_id(other, "receivables", "account:acme", "USD")],
        )
    out = StringIO()
    call_command("ledger_check_balances", "--book", "root", stdout=out)  # root is sound
    assert "other" not in out.getvalue()
    with pytest.raises(CommandError):
        call_command("ledger_check_balances", "--book", "other", stdout=StringIO())
    with pytest.raises(CommandError, match="no book 'nope'"):
        call_command("ledger_check_balances", "--book", "nope", stdout=StringIO())
