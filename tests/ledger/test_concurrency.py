"""Parallel posters on real connections (§8): 8 threads post into the SAME ledger accounts and
counterparties with legs in shuffled orders, two of them racing on the same idempotency keys listed in
opposite orders. No deadlock, nothing lost, every key posted once, cached balances equal the
postings.

Each thread runs on its own database connection (Django opens one per thread) and closes it at the
end; transaction=True so the threads see each other's commits.
"""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.db import connections

from ledger.models import Book, JournalEntry
from ledger.selectors import account_balance, balance_drift, balances_by_counterparty, trial_balance
from ledger.services import EntryDraft, Leg, credit, debit, entries_post, entry_post
from tests.ledger.factories import BookFactory, at

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
ENTRIES = 50
TINY = Decimal("0.000000000000000001")


def legs_for(i: int, rng: random.Random) -> list[Leg]:
    """Entry i (0..49): a sale of (i + 1) USD to acme, plus a 0.50 USD cash fee, plus a CNY
    prepayment of 1.000000000000000001 to provider glm; legs shuffled."""
    legs = [
        debit("receivables", Decimal(i + 1), "USD", "account:acme"),
        debit("cash", Decimal("0.50"), "USD"),
        credit("revenue", Decimal(i + 1) + Decimal("0.50"), "USD"),
        debit("upstream_prepayments", 1 + TINY, "CNY", "provider:glm"),
        credit("upstream_payables", 1 + TINY, "CNY", "provider:glm"),
    ]
    rng.shuffle(legs)
    return legs


def test_eight_parallel_posters_lose_nothing_and_never_deadlock() -> None:
    book = BookFactory(code="root")
    barrier = threading.Barrier(THREADS)
    pair = threading.Barrier(2)  # threads 6 and 7 start each batch together
    errors: list[BaseException] = []
    posted_ids: dict[int, list[int]] = {}

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            the_book = Book.objects.get(pk=book.pk)
            barrier.wait(timeout=30)
            if n < 6:
                # Threads 0-5: 50 keys of their own, one entry per transaction.
                posted_ids[n] = [
                    entry_post(
                        book=the_book,
                        idempotency_key=f"t{n}:{i}",
                        occurred_at=at(1 + i % 28),
                        legs=legs_for(i, rng),
                    ).pk
                    for i in range(ENTRIES)
                ]
            else:
                # Threads 6 and 7: the same 50 shared keys in the same batches of 10, thread 7
                # listing each batch backwards, so both claim the same keys in opposite orders.
                ids = []
                for start in range(0, ENTRIES, 10):
                    keys = list(range(start, start + 10))
                    if n == 7:
                        keys.reverse()
                    batch = [
                        EntryDraft(f"shared:{i}", at(1 + i % 28), legs_for(i, rng), description=f"shared {i}")
                        for i in keys
                    ]
                    pair.wait(timeout=30)
                    ids += [e.pk for e in entries_post(book=the_book, drafts=batch)]
                posted_ids[n] = ids
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a poster hung"
    assert errors == []

    # 6 x 50 own keys + 50 shared keys = 350 entries; the shared ones once each.
    assert JournalEntry.objects.filter(book=book).count() == 350
    assert sorted(posted_ids[6]) == sorted(posted_ids[7])
    assert len(set(posted_ids[6])) == 50
    # Seven sets of entries 0..49: receivables = 7 x (1 + 2 + ... + 50) = 7 x 1275 = 8925.
    assert account_balance(book=book, account_code="receivables", currency="USD") == Decimal("8925")
    assert balances_by_counterparty(book=book, account_code="receivables", currency="USD") == {
        "account:acme": Decimal("8925")
    }
    # cash = 350 x 0.50 = 175; revenue = 8925 + 175 = 9100.
    assert account_balance(book=book, account_code="cash", currency="USD") == Decimal("175")
    assert account_balance(book=book, account_code="revenue", currency="USD") == Decimal("9100")
    # CNY: 350 x 1.000000000000000001 = 350.000000000000000350, on both sides.
    assert account_balance(
        book=book, account_code="upstream_prepayments", currency="CNY", counterparty="provider:glm"
    ) == Decimal("350.00000000000000035")
    assert account_balance(book=book, account_code="upstream_payables", currency="CNY") == Decimal(
        "350.00000000000000035"
    )
    assert [row["difference"] for row in trial_balance(book=book)] == [0, 0]
    assert balance_drift(book=book) == []
