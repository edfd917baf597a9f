"""entry_post / entries_post / entries_post_ids: the one writer of the books, its idempotency and its refusals (§8)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from distributor.errors import Conflict, ValidationFailed
from ledger.models import AccountBalance, Book, JournalEntry, Posting
from ledger.selectors import account_balance
from ledger.services import EntryDraft, Leg, credit, debit, entries_post, entries_post_ids, entry_post
from tests.ledger.factories import BookFactory, at

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int]:
    return JournalEntry.objects.count(), Posting.objects.count(), AccountBalance.objects.count()


def test_a_sale_posts_one_balanced_entry_and_moves_both_balances() -> None:
    book = BookFactory(code="root")
    entry = entry_post(
        book=book,
        idempotency_key="invoice:1",
        occurred_at=at(5),
        legs=[
            debit("receivables", Decimal("120.50"), "USD", "account:acme"),
            credit("revenue", Decimal("120.50"), "USD"),
        ],
        description="Invoice 1",
        source_type="invoice",
        source_id="1",
    )
    assert entry.postings.count() == 2
    # Dr receivables 120.50 -> +120.50 (debit-normal); Cr revenue 120.50 -> +120.50 (credit-normal).
    assert account_balance(book=book, account_code="receivables", currency="USD") == Decimal("120.50")
    assert account_balance(book=book, account_code="revenue", currency="USD") == Decimal("120.50")


def test_the_same_key_twice_posts_once() -> None:
    book = BookFactory()
    legs = [
        debit("cash", Decimal("10"), "USD"),
        credit("customer_deposits", Decimal("10"), "USD", "account:acme"),
    ]
    first = entry_post(book=book, idempotency_key="topup:7", occurred_at=at(1), legs=legs)
    # Same content, legs in another order, amount written differently, the same instant in
    # another zone: still the same entry.
    again = entry_post(
        book=book,
        idempotency_key="topup:7",
        occurred_at=at(1).astimezone(ZoneInfo("Asia/Shanghai")),
        legs=[
            credit("customer_deposits", Decimal("10.000"), "USD", "account:acme"),
            debit("cash", Decimal("10.0"), "USD"),
        ],
    )
    assert again.pk == first.pk
    assert counts() == (1, 2, 2)
    # 10 deposited once, not 20.
    assert account_balance(book=book, account_code="customer_deposits", currency="USD") == Decimal("10")


def test_the_same_key_with_different_content_is_a_conflict_and_writes_nothing() -> None:
    book = BookFactory()
    legs = [debit("cash", Decimal("10"), "USD"), credit("customer_deposits", Decimal("10"), "USD")]
    entry_post(book=book, idempotency_key="topup:8", occurred_at=at(1), legs=legs)
    other = [debit("cash", Decimal("11"), "USD"), credit("customer_deposits", Decimal("11"), "USD")]
    with pytest.raises(Conflict):
        entry_post(book=book, idempotency_key="topup:8", occurred_at=at(1), legs=other)
    with pytest.raises(Conflict):
        entry_post(book=book, idempotency_key="topup:8", occurred_at=at(1) + timedelta(seconds=1), legs=legs)
    assert counts() == (1, 2, 2)
    assert account_balance(book=book, account_code="cash", currency="USD") == Decimal("10")


def test_keys_are_per_book() -> None:
    one, two = BookFactory(), BookFactory()
    legs = [debit("cash", Decimal("1"), "USD"), credit("equity", Decimal("1"), "USD")]
    a = entry_post(book=one, idempotency_key="capital", occurred_at=at(1), legs=legs)
    b = entry_post(book=two, idempotency_key="capital", occurred_at=at(1), legs=legs)
    assert a.pk != b.pk


def _entries_post_as_ids(*, book: Book, drafts: list[EntryDraft]) -> list[int]:
    return [entry.pk for entry in entries_post(book=book, drafts=drafts)]


@pytest.mark.parametrize(
    "post", [_entries_post_as_ids, entries_post_ids], ids=["entries_post", "entries_post_ids"]
)
def test_a_batch_posts_new_keys_and_returns_existing_ones_in_the_order_given(
    post: Callable[..., list[int]],
) -> None:
    book = BookFactory()
    legs = [debit("cash", Decimal("5"), "USD"), credit("equity", Decimal("5"), "USD")]
    old = entry_post(book=book, idempotency_key="b", occurred_at=at(1), legs=legs)
    drafts = [EntryDraft(key, at(2 if key != "b" else 1), legs) for key in ("c", "b", "a", "c")]
    ids = post(book=book, drafts=drafts)
    by_key = dict(JournalEntry.objects.filter(book=book).values_list("idempotency_key", "pk"))
    # In the order given; b is the entry posted before, and c twice is one entry.
    assert ids == [by_key["c"], old.pk, by_key["a"], by_key["c"]]
    # b, then a and c once each: 3 entries of 5.
    assert account_balance(book=book, account_code="cash", currency="USD") == Decimal("15")
    # A retry returns the same ids and posts nothing.
    assert post(book=book, drafts=drafts) == ids
    assert counts() == (3, 6, 2)
    # The same key with other content is refused and writes nothing.
    other = [debit("cash", Decimal("6"), "USD"), credit("equity", Decimal("6"), "USD")]
    with pytest.raises(Conflict):
        post(book=book, drafts=[EntryDraft("d", at(3), legs), EntryDraft("a", at(2), other)])
    assert counts() == (3, 6, 2)


def test_a_batch_with_one_bad_draft_writes_nothing() -> None:
    book = BookFactory()
    good = [debit("cash", Decimal("5"), "USD"), credit("equity", Decimal("5"), "USD")]
    bad = [debit("cash", Decimal("5"), "USD"), credit("equity", Decimal("4"), "USD")]
    with pytest.raises(ValidationFailed):
        entries_post(book=book, drafts=[EntryDraft("ok", at(1), good), EntryDraft("bad", at(1), bad)])
    assert counts() == (0, 0, 0)


def test_an_entry_balances_per_currency_not_in_total() -> None:
    book = BookFactory()
    # 10 USD of debits against 10 CNY of credits: equal numbers, different money.
    legs = [debit("cash", Decimal("10"), "USD"), credit("revenue", Decimal("10"), "CNY")]
    with pytest.raises(ValidationFailed) as caught:
        entry_post(book=book, idempotency_key="fx", occurred_at=at(1), legs=legs)
    assert caught.value.details["difference"] == {"USD": "10", "CNY": "-10"}
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        (
            [debit("cash", Decimal("10"), "USD"), credit("revenue", Decimal("9.99"), "USD")],
            "does not balance",
        ),
        ([debit("cash", Decimal("10"), "USD")], "at least two legs"),
        ([debit("cash", Decimal("0"), "USD"), credit("revenue", Decimal("0"), "USD")], "positive"),
        ([debit("cash", Decimal("-5"), "USD"), credit("revenue", Decimal("-5"), "USD")], "positive"),
        (
            [debit("petty_cash", Decimal("5"), "USD"), credit("revenue", Decimal("5"), "USD")],
            "no ledger account",
        ),
        ([debit("cash", Decimal("5"), "XXX"), credit("revenue", Decimal("5"), "XXX")], "unknown currency"),
        ([debit("cash", Decimal("NaN"), "USD"), credit("revenue", Decimal("NaN"), "USD")], "positive"),
        ([Leg("cash", "left", Decimal("5"), "USD"), credit("revenue", Decimal("5"), "USD")], "side must be"),
        (
            # 19 places: 0.0000000000000000001 cannot be stored in NUMERIC(38, 18).
            [
                debit("cash", Decimal("0.0000000000000000001"), "USD"),
                credit("revenue", Decimal("0.0000000000000000001"), "USD"),
            ],
            "more than 18 decimal places",
        ),
        ([debit("cash", Decimal("1E+20"), "USD"), credit("revenue", Decimal("1E+20"), "USD")], "too large"),
        (
            [debit("cash", Decimal("5"), "USD", "x" * 101), credit("revenue", Decimal("5"), "USD")],
            "counterparty",
        ),
    ],
    ids=[
        "unbalanced",
        "one-leg",
        "zero",
        "negative",
        "unknown-account",
        "unknown-currency",
        "nan",
        "bad-side",
        "19-places",
        "too-large",
        "long-counterparty",
    ],
)
def test_the_service_refuses_a_bad_entry_and_writes_nothing(legs: list[Leg], message: str) -> None:
    book = BookFactory()
    with pytest.raises(ValidationFailed) as caught:
        entry_post(book=book, idempotency_key="bad", occurred_at=at(1), legs=legs)
    assert message in caught.value.message
    assert counts() == (0, 0, 0)


def test_an_amount_exact_at_18_places_is_accepted_however_it_is_written() -> None:
    book = BookFactory()
    # 0.1000000000 x 0.5000000000 = 0.05000000000000000000 (20 places written, 0.05 in value).
    product = Decimal("0.1000000000") * Decimal("0.5000000000")
    smallest = Decimal("0.000000000000000001")
    entry_post(
        book=book,
        idempotency_key="exact",
        occurred_at=at(1),
        legs=[
            debit("cost_of_sales", product + smallest, "USD"),
            credit("upstream_payables", product + smallest, "USD"),
        ],
    )
    assert account_balance(book=book, account_code="cost_of_sales", currency="USD") == Decimal(
        "0.050000000000000001"
    )


def test_a_naive_time_and_an_empty_key_are_refused() -> None:
    book = BookFactory()
    legs = [debit("cash", Decimal("1"), "USD"), credit("equity", Decimal("1"), "USD")]
    with pytest.raises(ValidationFailed, match="time zone"):
        entry_post(book=book, idempotency_key="k", occurred_at=at(1).replace(tzinfo=None), legs=legs)
    with pytest.raises(ValidationFailed, match="idempotency key"):
        entry_post(book=book, idempotency_key="", occurred_at=at(1), legs=legs)
    assert counts() == (0, 0, 0)
