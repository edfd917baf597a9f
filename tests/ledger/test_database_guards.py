"""The books protect themselves whatever code runs (§8, migration 0002): these tests bypass the ORM
and the posting service with raw SQL and expect PostgreSQL itself to refuse.

They commit for real (transaction=True) because the balance check is a deferred constraint trigger
that only fires at COMMIT.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg.errors
import pytest
from django.db import DatabaseError, IntegrityError, ProgrammingError, connection, transaction

from ledger.models import AccountBalance, Book, JournalEntry, LedgerAccount, Posting
from ledger.services import credit, debit, entry_post
from tests.ledger.factories import BookFactory, at

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> tuple[int, int, int]:
    return JournalEntry.objects.count(), Posting.objects.count(), AccountBalance.objects.count()


def account_id(book: Book, code: str) -> int:
    return LedgerAccount.objects.get(book=book, code=code).pk


def insert_entry(cur: object, book: Book, key: str) -> int:
    cur.execute(  # type: ignore[attr-defined]
        """INSERT INTO ledger_journalentry (book_id, idempotency_key, content_hash, occurred_at, posted_at,
                                             description, source_type, source_id)
           VALUES (%s, %s, 'raw', now(), now(), 'raw SQL', '', '') RETURNING id""",
        [book.pk, key],
    )
    return cur.fetchone()[0]  # type: ignore[attr-defined]


def insert_posting(
    cur: object, entry_id: int, account: int, side: str, amount: str, currency: str = "USD"
) -> None:
    cur.execute(  # type: ignore[attr-defined]
        """INSERT INTO ledger_posting (entry_id, ledger_account_id, counterparty, side, amount, currency)
           VALUES (%s, %s, '', %s, %s, %s)""",
        [entry_id, account, side, Decimal(amount), currency],
    )


def test_an_unbalanced_entry_is_refused_at_commit() -> None:
    book = BookFactory()
    cash, revenue = account_id(book, "cash"), account_id(book, "revenue")
    before = snapshot()
    reached_commit = False
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
        entry = insert_entry(cur, book, "raw:unbalanced")
        # Dr 100.00, Cr 99.99: off by 0.01. Each INSERT succeeds; the check waits for COMMIT.
        insert_posting(cur, entry, cash, "debit", "100.00")
        insert_posting(cur, entry, revenue, "credit", "99.99")
        reached_commit = True
    assert reached_commit
    assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
    assert "does not balance in USD" in str(caught.value)
    assert snapshot() == before


def test_an_entry_balanced_in_total_but_not_per_currency_is_refused() -> None:
    book = BookFactory()
    cash, revenue = account_id(book, "cash"), account_id(book, "revenue")
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
        entry = insert_entry(cur, book, "raw:two-currencies")
        insert_posting(cur, entry, cash, "debit", "10", "USD")
        insert_posting(cur, entry, revenue, "credit", "10", "CNY")
    assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
    assert JournalEntry.objects.count() == 0


def test_an_entry_with_one_posting_is_refused() -> None:
    book = BookFactory()
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
        entry = insert_entry(cur, book, "raw:one-leg")
        insert_posting(cur, entry, account_id(book, "cash"), "debit", "5")
    assert "has 1 postings; at least two are required" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
    assert snapshot() == (0, 0, 0)


def test_an_entry_with_no_posting_is_refused() -> None:
    book = BookFactory()
    with (
        pytest.raises(IntegrityError, match="has 0 postings"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        insert_entry(cur, book, "raw:empty")
    assert JournalEntry.objects.count() == 0


def test_a_balanced_raw_entry_is_accepted() -> None:
    """The guard is not a blanket refusal: a balanced entry written by hand commits."""
    book = BookFactory()
    with transaction.atomic(), connection.cursor() as cur:
        entry = insert_entry(cur, book, "raw:balanced")
        insert_posting(cur, entry, account_id(book, "cash"), "debit", "5")
        insert_posting(cur, entry, account_id(book, "equity"), "credit", "5")
    assert Posting.objects.filter(entry_id=entry).count() == 2


def test_a_posting_added_later_that_unbalances_an_old_entry_is_refused() -> None:
    book = BookFactory()
    old = entry_post(
        book=book,
        idempotency_key="sale:1",
        occurred_at=at(5),
        legs=[
            debit("receivables", Decimal("50"), "USD", "account:acme"),
            credit("revenue", Decimal("50"), "USD"),
        ],
    )
    before = snapshot()
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
        # A sneaky extra 10 of revenue on last month's sale: Dr 50, Cr 60.
        insert_posting(cur, old.pk, account_id(book, "revenue"), "credit", "10")
    assert f"journal entry {old.pk} does not balance in USD" in str(caught.value)
    assert snapshot() == before
    assert old.postings.count() == 2


# One test for all six statements: each transaction=True test costs a truncate of every table.
CHANGES = [
    "UPDATE ledger_journalentry SET description = 'edited' WHERE id = %(entry)s",
    "UPDATE ledger_journalentry SET occurred_at = occurred_at - interval '1 month' WHERE id = %(entry)s",
    "DELETE FROM ledger_journalentry WHERE id = %(entry)s",
    "UPDATE ledger_posting SET amount = amount + 1 WHERE entry_id = %(entry)s",
    "UPDATE ledger_posting SET counterparty = 'account:other' WHERE entry_id = %(entry)s",
    "DELETE FROM ledger_posting WHERE entry_id = %(entry)s",
]


def test_posted_rows_cannot_be_updated_or_deleted() -> None:
    book = BookFactory()
    entry = entry_post(
        book=book,
        idempotency_key="sale:1",
        occurred_at=at(5),
        legs=[
            debit("receivables", Decimal("50"), "USD", "account:acme"),
            credit("revenue", Decimal("50"), "USD"),
        ],
        description="original",
    )
    for statement in CHANGES:
        with pytest.raises(ProgrammingError) as caught, transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement, {"entry": entry.pk})
        assert isinstance(caught.value.__cause__, psycopg.errors.InsufficientPrivilege), statement
        assert "post a reversal instead" in str(caught.value)
    entry.refresh_from_db()
    assert entry.description == "original"
    assert sorted(entry.postings.values_list("amount", "counterparty")) == [
        (Decimal("50"), ""),
        (Decimal("50"), "account:acme"),
    ]


def test_zero_and_negative_amounts_are_refused_by_a_check_constraint() -> None:
    book = BookFactory()
    for amount in ("0", "-10"):
        with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cur:
            entry = insert_entry(cur, book, f"raw:{amount}")
            # A negative debit against a negative credit would balance; the CHECK refuses each leg.
            insert_posting(cur, entry, account_id(book, "cash"), "debit", amount)
            insert_posting(cur, entry, account_id(book, "revenue"), "credit", amount)
        assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
        assert "posting_amount_positive" in str(caught.value)
    assert snapshot() == (0, 0, 0)


def test_exchange_rates_are_append_only() -> None:
    from ledger.services import exchange_rate_set

    rate = exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.1"), effective_at=at(1))
    for statement in ("UPDATE ledger_exchangerate SET rate = 7.2", "DELETE FROM ledger_exchangerate"):
        with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement)
        assert isinstance(caught.value.__cause__, psycopg.errors.InsufficientPrivilege)
    rate.refresh_from_db()
    assert rate.rate == Decimal("7.1")
