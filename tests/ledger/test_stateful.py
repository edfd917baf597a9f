"""A property-based model of the books: random balanced entries (accounts, USD/CNY, counterparties,
amounts with up to 18 places), idempotent re-posts and reversals, checked after every step against a
plain-Python model of the expected balances and against the database's own guards."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from distributor.errors import Conflict
from ledger.models import CHART_OF_ACCOUNTS, Book, JournalEntry, Side
from ledger.selectors import account_balance, balance_drift, balances_by_counterparty, trial_balance
from ledger.services import Leg, book_create, entry_post, entry_reverse

ACCOUNTS = [code for code, *_ in CHART_OF_ACCOUNTS]
NORMAL = {code: side for code, _, _, side in CHART_OF_ACCOUNTS}
CURRENCIES = ["USD", "CNY"]
COUNTERPARTIES = ["", "account:acme", "account:beta", "provider:glm", "book:root"]
START = datetime(2026, 1, 1, tzinfo=UTC)
MIDDLE = START + timedelta(days=15)

amounts = st.decimals(
    min_value=Decimal("0.000000000000000001"),
    max_value=Decimal("1000000"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)
legs_of_one_side = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(COUNTERPARTIES), amounts), min_size=1, max_size=3
)


@st.composite
def balanced_legs(draw: st.DrawFn) -> list[Leg]:
    """Debits and credits drawn freely per currency, then one closing leg for the difference."""
    legs: list[Leg] = []
    for currency in draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=2, unique=True)):
        debits = [Leg(a, Side.DEBIT, x, currency, cp) for a, cp, x in draw(legs_of_one_side)]
        credits = [Leg(a, Side.CREDIT, x, currency, cp) for a, cp, x in draw(legs_of_one_side)]
        gap = sum(leg.amount for leg in debits) - sum(leg.amount for leg in credits)
        if gap:
            account, counterparty = draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(COUNTERPARTIES))
            side = Side.CREDIT if gap > 0 else Side.DEBIT
            (credits if gap > 0 else debits).append(Leg(account, side, abs(gap), currency, counterparty))
        legs += debits + credits
    return draw(st.permutations(legs))


class Books(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book: Book
        # (account, counterparty, currency) -> debits - credits, all time and up to MIDDLE.
        self.expected: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        self.expected_by_middle: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        self.posted: list[tuple[JournalEntry, list[Leg]]] = []
        self.reversed: set[int] = set()
        self.serial = 0
        # (account, currency) pairs moved since the last check: the selectors of the others cannot
        # have changed (and balance_drift re-checks every cached row of the book each step).
        self.dirty: set[tuple[str, str]] = set()

    @initialize()
    def open_book(self) -> None:
        # A fresh book per run: the runs share one test transaction.
        self.book = book_create(code=f"prop-{uuid.uuid4().hex[:12]}", name="Property Ltd", currency="USD")

    def _apply(self, legs: list[Leg], when: datetime) -> None:
        for leg in legs:
            self.dirty.add((leg.account, leg.currency))
            signed = leg.amount if leg.side == Side.DEBIT else -leg.amount
            self.expected[(leg.account, leg.counterparty, leg.currency)] += signed
            if when <= MIDDLE:
                self.expected_by_middle[(leg.account, leg.counterparty, leg.currency)] += signed

    @rule(legs=balanced_legs(), day=st.integers(min_value=0, max_value=30))
    def post(self, legs: list[Leg], day: int) -> None:
        self.serial += 1
        when = START + timedelta(days=day)
        entry = entry_post(book=self.book, idempotency_key=f"e{self.serial}", occurred_at=when, legs=legs)
        self.posted.append((entry, legs))
        self._apply(legs, when)

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def post_again(self, data: st.DataObject) -> None:
        """The same key and content again (legs reshuffled) returns the first entry, moves nothing.
        (Reversals are left out: entry_post cannot name what an entry reverses, so re-posting a
        mirror's key through it is different content, a Conflict.)"""
        entry, legs = data.draw(st.sampled_from([p for p in self.posted if p[0].reverses_id is None]))
        again = entry_post(
            book=self.book,
            idempotency_key=entry.idempotency_key,
            occurred_at=entry.occurred_at,
            legs=data.draw(st.permutations(legs)),
        )
        assert again.pk == entry.pk

    @precondition(lambda self: self.posted)
    @rule(data=st.data(), day=st.integers(min_value=0, max_value=30))
    def reverse(self, data: st.DataObject, day: int) -> None:
        entry, legs = data.draw(st.sampled_from(self.posted))
        when = START + timedelta(days=day)
        if entry.pk in self.reversed:
            # Reversed already: another reversal under another key is refused and moves nothing.
            try:
                entry_reverse(entry=entry, occurred_at=when, idempotency_key=f"again:{uuid.uuid4().hex}")
            except Conflict:
                return
            raise AssertionError("a second reversal was accepted")
        mirror = entry_reverse(entry=entry, occurred_at=when)
        assert mirror.reverses_id == entry.pk
        self.reversed.add(entry.pk)
        mirrored = [
            Leg(
                leg.account,
                Side.CREDIT if leg.side == Side.DEBIT else Side.DEBIT,
                leg.amount,
                leg.currency,
                leg.counterparty,
            )
            for leg in legs
        ]
        self.posted.append((mirror, mirrored))
        self._apply(mirrored, when)

    @invariant()
    def the_database_guards_hold(self) -> None:
        if not hasattr(self, "book"):
            return
        with connection.cursor() as cur:
            # Fire the deferred balance trigger now for everything posted in this test transaction.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            cur.execute(
                """SELECT p.entry_id, p.currency FROM ledger_posting p JOIN ledger_journalentry e ON e.id = p.entry_id
                   WHERE e.book_id = %s GROUP BY 1, 2
                   HAVING sum(CASE WHEN p.side = 'debit' THEN p.amount ELSE -p.amount END) <> 0""",
                [self.book.pk],
            )
            assert cur.fetchall() == []
        assert all(row["difference"] == 0 for row in trial_balance(book=self.book))
        assert all(row["difference"] == 0 for row in trial_balance(book=self.book, as_of=MIDDLE))
        assert balance_drift(book=self.book) == []

    @invariant()
    def the_selectors_agree_with_the_model(self) -> None:
        if not hasattr(self, "book"):
            return
        for account, currency in sorted(self.dirty):
            sign = 1 if NORMAL[account] == Side.DEBIT else -1
            per_counterparty = {
                cp: sign * net
                for (a, cp, c), net in self.expected.items()
                if (a, c) == (account, currency) and net != 0
            }
            assert (
                balances_by_counterparty(book=self.book, account_code=account, currency=currency)
                == per_counterparty
            )
            for cp in COUNTERPARTIES[:2]:
                expected = sign * self.expected.get((account, cp, currency), Decimal(0))
                assert (
                    account_balance(book=self.book, account_code=account, currency=currency, counterparty=cp)
                    == expected
                )
            total = sum(per_counterparty.values(), Decimal(0))
            assert account_balance(book=self.book, account_code=account, currency=currency) == total
            by_middle = sum(
                (v for (a, _, c), v in self.expected_by_middle.items() if (a, c) == (account, currency)),
                Decimal(0),
            )
            assert (
                account_balance(book=self.book, account_code=account, currency=currency, as_of=MIDDLE)
                == sign * by_middle
            )
        self.dirty.clear()


@pytest.mark.django_db
def test_the_books_match_a_model_of_them() -> None:
    run_state_machine_as_test(
        Books,
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
