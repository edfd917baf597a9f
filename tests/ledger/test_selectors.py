"""Balances, the trial balance and the general ledger on one hand-worked month (§8).

The month of book "root" (USD base), every figure below follows from these entries:

  E1 Jan  5  Dr receivables acme  100.00 USD   Cr revenue        100.00 USD   (invoice to acme)
  E2 Jan 10  Dr cash               60.00 USD   Cr receivables acme 60.00 USD  (acme pays part)
  E3 Jan 12  Dr receivables beta   25.50 USD   Cr revenue         25.50 USD   (invoice to beta)
  E4 Jan 15  Dr receivables acme  700.00 CNY   Cr revenue        700.00 CNY   (acme, CNY invoice)
  E5 Jan 20  Dr bad_debt_expense    4.00 USD   Cr allowance        4.00 USD   (provision)
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from distributor.errors import NotFound, ValidationFailed
from ledger.models import Book
from ledger.selectors import account_balance, balances_by_counterparty, general_ledger, trial_balance
from ledger.services import credit, debit, entry_post
from tests.ledger.factories import BookFactory, at, receipt, sale

pytestmark = pytest.mark.django_db


@pytest.fixture
def month() -> Book:
    book = BookFactory(code="root")
    sale(book, "E1", "100.00", customer="account:acme", when=at(5), description="Invoice acme")
    receipt(book, "E2", "60.00", customer="account:acme", when=at(10))
    sale(book, "E3", "25.50", customer="account:beta", when=at(12), description="Invoice beta")
    sale(
        book,
        "E4",
        "700.00",
        customer="account:acme",
        currency="CNY",
        when=at(15),
        description="Invoice acme CNY",
    )
    entry_post(
        book=book,
        idempotency_key="E5",
        occurred_at=at(20),
        legs=[debit("bad_debt_expense", Decimal("4.00"), "USD"), credit("allowance", Decimal("4.00"), "USD")],
        description="Provision",
    )
    return book


def test_balances_are_signed_in_the_normal_side(month: Book) -> None:
    # Receivables (debit-normal) USD: 100 - 60 + 25.50 = 65.50.
    assert account_balance(book=month, account_code="receivables", currency="USD") == Decimal("65.50")
    # Revenue (credit-normal) USD: 100 + 25.50 = 125.50, positive.
    assert account_balance(book=month, account_code="revenue", currency="USD") == Decimal("125.50")
    # The allowance is a contra-asset with a credit normal side: a provision of 4 reads +4.
    assert account_balance(book=month, account_code="allowance", currency="USD") == Decimal("4.00")
    assert account_balance(book=month, account_code="cash", currency="USD") == Decimal("60.00")
    # Currencies are never added: CNY receivables are 700, apart.
    assert account_balance(book=month, account_code="receivables", currency="CNY") == Decimal("700.00")
    # An account with no activity reads zero.
    assert account_balance(book=month, account_code="tax_payable", currency="USD") == 0


def test_a_balance_per_counterparty(month: Book) -> None:
    # acme: 100 - 60 = 40.00; beta: 25.50; nobody else.
    assert account_balance(
        book=month, account_code="receivables", currency="USD", counterparty="account:acme"
    ) == Decimal("40.00")
    assert account_balance(
        book=month, account_code="receivables", currency="USD", counterparty="account:beta"
    ) == Decimal("25.50")
    assert (
        account_balance(book=month, account_code="receivables", currency="USD", counterparty="account:zeta")
        == 0
    )
    # "" is the rows without a counterparty: revenue is kept without one.
    assert account_balance(book=month, account_code="revenue", currency="USD", counterparty="") == Decimal(
        "125.50"
    )
    assert balances_by_counterparty(book=month, account_code="receivables", currency="USD") == {
        "account:acme": Decimal("40.00"),
        "account:beta": Decimal("25.50"),
    }
    # beta pays 25.50 in full and drops out of the list (non-zero balances only).
    receipt(month, "E6", "25.50", customer="account:beta", when=at(25))
    assert balances_by_counterparty(book=month, account_code="receivables", currency="USD") == {
        "account:acme": Decimal("40.00")
    }


def test_a_balance_as_of_a_date_counts_only_entries_that_occurred_by_then(month: Book) -> None:
    receivables = {"book": month, "account_code": "receivables", "currency": "USD"}
    assert account_balance(**receivables, as_of=at(1)) == 0  # nothing yet
    assert account_balance(**receivables, as_of=at(5)) == Decimal(
        "100.00"
    )  # E1 at 12:00 on the 5th is included
    assert account_balance(**receivables, as_of=at(5, hour=11)) == 0  # an hour earlier it is not
    assert account_balance(**receivables, as_of=at(11)) == Decimal("40.00")  # 100 - 60
    assert account_balance(**receivables, as_of=at(11), counterparty="account:beta") == 0
    assert account_balance(**receivables, as_of=at(31)) == Decimal("65.50")  # the same as the cached figure
    assert account_balance(book=month, account_code="allowance", currency="USD", as_of=at(31)) == Decimal(
        "4.00"
    )


def test_the_trial_balance_nets_to_zero_per_currency(month: Book) -> None:
    # USD debits: 100 + 60 + 25.50 + 4 = 189.50, and the same in credits. CNY: 700 each side.
    assert trial_balance(book=month) == [
        {"currency": "CNY", "debits": Decimal("700.00"), "credits": Decimal("700.00"), "difference": 0},
        {"currency": "USD", "debits": Decimal("189.50"), "credits": Decimal("189.50"), "difference": 0},
    ]
    # As of the 11th: E1 and E2 only, 160.00 each side, and no CNY yet.
    assert trial_balance(book=month, as_of=at(11)) == [
        {"currency": "USD", "debits": Decimal("160.00"), "credits": Decimal("160.00"), "difference": 0},
    ]


def test_the_general_ledger_runs_a_balance_per_currency(month: Book) -> None:
    lines = general_ledger(book=month, account_code="receivables")
    got = [
        (line.occurred_at, line.description, line.side, line.amount, line.currency, line.running_balance)
        for line in lines
    ]
    assert got == [
        (at(5), "Invoice acme", "debit", Decimal("100.00"), "USD", Decimal("100.00")),
        (at(10), "Payment E2", "credit", Decimal("60.00"), "USD", Decimal("40.00")),  # 100 - 60
        (at(12), "Invoice beta", "debit", Decimal("25.50"), "USD", Decimal("65.50")),  # 40 + 25.50
        (at(15), "Invoice acme CNY", "debit", Decimal("700.00"), "CNY", Decimal("700.00")),  # CNY runs alone
    ]
    acme_usd = general_ledger(
        book=month, account_code="receivables", counterparty="account:acme", currency="USD"
    )
    assert [line.running_balance for line in acme_usd] == [Decimal("100.00"), Decimal("40.00")]
    # Revenue is credit-normal: its running balance grows with credits, 100 then 125.50.
    revenue = general_ledger(book=month, account_code="revenue", currency="USD")
    assert [line.running_balance for line in revenue] == [Decimal("100.00"), Decimal("125.50")]
    assert [line.idempotency_key for line in revenue] == ["E1", "E3"]


def test_the_general_ledger_orders_by_when_it_happened_not_when_it_was_posted(month: Book) -> None:
    # A back-dated receipt posted last but occurring on the 7th slots in after E1.
    receipt(month, "E7", "10.00", customer="account:acme", when=at(7))
    lines = general_ledger(book=month, account_code="receivables", currency="USD")
    # 100, 100 - 10 = 90, 90 - 60 = 30, 30 + 25.50 = 55.50.
    assert [line.running_balance for line in lines] == [
        Decimal("100.00"),
        Decimal("90.00"),
        Decimal("30.00"),
        Decimal("55.50"),
    ]


def test_the_general_ledger_reads_in_one_query(month: Book, django_assert_num_queries: object) -> None:
    lines = general_ledger(book=month, account_code="receivables")
    with django_assert_num_queries(1):  # type: ignore[operator]
        assert len([line.entry.idempotency_key for line in lines]) == 4


def test_a_cached_balance_is_one_query(month: Book, django_assert_num_queries: object) -> None:
    with django_assert_num_queries(1):  # type: ignore[operator]
        account_balance(book=month, account_code="receivables", currency="USD")
    with django_assert_num_queries(1):  # type: ignore[operator]
        account_balance(book=month, account_code="receivables", currency="USD", counterparty="account:acme")


def test_books_do_not_mix(month: Book) -> None:
    other = BookFactory(code="reseller")
    sale(other, "E1", "9.00", customer="account:acme")
    assert account_balance(book=month, account_code="receivables", currency="USD") == Decimal("65.50")
    assert account_balance(book=other, account_code="receivables", currency="USD") == Decimal("9.00")


def test_an_unknown_account_or_currency_is_a_clear_error(month: Book) -> None:
    with pytest.raises(NotFound, match="no ledger account 'petty_cash' in book 'root'"):
        account_balance(book=month, account_code="petty_cash", currency="USD")
    with pytest.raises(NotFound):
        account_balance(book=month, account_code="petty_cash", currency="USD", as_of=at(31))
    with pytest.raises(NotFound):
        general_ledger(book=month, account_code="petty_cash")
    with pytest.raises(ValidationFailed, match="unknown currency"):
        account_balance(book=month, account_code="cash", currency="BTC")
    with pytest.raises(ValidationFailed, match="time zone"):
        trial_balance(book=month, as_of=at(1).replace(tzinfo=None))
