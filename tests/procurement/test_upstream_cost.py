"""Quota purchases and the upstream cost of usage (§3, §11.5): FIFO by expiry then purchase time,
each part at its purchase's paid/credit rate, the rest accrued as a payable at list."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from distributor.errors import Conflict, ValidationFailed
from ledger.models import JournalEntry
from procurement.models import QuotaDraw, QuotaPurchase, UpstreamCharge
from procurement.selectors import upstream_payables, upstream_prepaid_at_cost
from procurement.services import (
    UpstreamCostRequest,
    quota_purchase_record,
    upstream_cost_draw,
    upstream_cost_draw_many,
)
from tests.procurement.factories import BookFactory, ProviderFactory, ProviderModelFactory, at, balance

pytestmark = pytest.mark.django_db


def test_a_paid_purchase_moves_cash_into_upstream_prepayments() -> None:
    book = BookFactory()
    minimax = ProviderFactory(code="minimax")
    purchase = quota_purchase_record(
        book=book,
        provider=minimax,
        paid=Decimal("9000.00"),
        credit=Decimal("10000.00"),
        currency="USD",
        purchased_at=at("2026-09-25T00:00:00"),
        expires_on=date(2027, 3, 31),
        reference="MM-PO-1",
    )
    # UTC book: usable through March 31, lapses at the start of April 1.
    assert purchase.expires_at == at("2027-04-01T00:00:00")
    assert purchase.remaining_credit == Decimal("10000.00")
    entry = purchase.purchase_entry
    assert entry is not None
    legs = sorted((p.ledger_account.code, p.side, p.amount, p.counterparty) for p in entry.postings.all())
    assert legs == [
        ("cash", "credit", Decimal("9000.00"), "provider:minimax"),
        ("upstream_prepayments", "debit", Decimal("9000.00"), "provider:minimax"),
    ]
    assert balance(book, "upstream_prepayments") == Decimal("9000.00")
    assert balance(book, "cash") == Decimal("-9000.00")
    assert upstream_prepaid_at_cost(book=book, currency="USD") == Decimal("9000.00")
    # The same reference again is the same purchase; other figures under it are a conflict.
    again = quota_purchase_record(
        book=book,
        provider=minimax,
        paid=Decimal("9000"),
        credit=Decimal("10000"),
        currency="USD",
        purchased_at=at("2026-09-25T00:00:00"),
        expires_on=date(2027, 3, 31),
        reference="MM-PO-1",
    )
    assert again.pk == purchase.pk
    with pytest.raises(Conflict):
        quota_purchase_record(
            book=book,
            provider=minimax,
            paid=Decimal("9500"),
            credit=Decimal("10000"),
            currency="USD",
            purchased_at=at("2026-09-25T00:00:00"),
            reference="MM-PO-1",
        )
    assert JournalEntry.objects.filter(book=book).count() == 1


def test_bad_purchases_are_refused() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    base = {"book": book, "provider": vendor, "currency": "USD", "purchased_at": at("2026-09-25T00:00:00")}
    with pytest.raises(ValidationFailed, match="deals in USD"):
        quota_purchase_record(**{**base, "currency": "CNY"}, paid=Decimal(1), credit=Decimal(1))
    with pytest.raises(ValidationFailed, match="promotional credit is free"):
        quota_purchase_record(**base, paid=Decimal(1), credit=Decimal(1), promotional=True)
    with pytest.raises(ValidationFailed, match="positive amount paid"):
        quota_purchase_record(**base, paid=Decimal(0), credit=Decimal(1))
    with pytest.raises(ValidationFailed, match="minor unit"):
        quota_purchase_record(**base, paid=Decimal("1.001"), credit=Decimal(1))
    with pytest.raises(ValidationFailed, match="expire before"):
        quota_purchase_record(**base, paid=Decimal(1), credit=Decimal(1), expires_on=date(2026, 9, 24))


def test_public_scenario_costs() -> None:
    """The October scenario: minimax bought 10000 credit for 9000, so 1150 at list costs
    1150 x 0.9 = 1035.00; zhipu paid = credit, so 37.50 costs 37.50; anthropic has no purchase,
    so 100.00 at list accrues as a payable of 100.00."""
    book = BookFactory(code="platform")
    minimax, zhipu, anthropic = (ProviderFactory(code=c) for c in ("minimax", "zhipu", "anthropic"))
    m25 = ProviderModelFactory(provider=minimax, code="minimax-m2.5")
    purchased = at("2026-09-25T00:00:00")
    quota_purchase_record(
        book=book,
        provider=minimax,
        paid=Decimal("9000.00"),
        credit=Decimal("10000.00"),
        currency="USD",
        purchased_at=purchased,
        expires_on=date(2027, 3, 31),
    )
    quota_purchase_record(
        book=book,
        provider=zhipu,
        paid=Decimal("1000.00"),
        credit=Decimal("1000.00"),
        currency="USD",
        purchased_at=purchased,
    )
    when = at("2026-10-15T10:00:00")
    mm = upstream_cost_draw(
        book=book,
        provider=minimax,
        list_charge=Decimal("1150"),
        currency="USD",
        at=when,
        idempotency_key="acme-1",
        model=m25,
    )
    assert (mm.cost, mm.drawn_list, mm.accrued_payable) == (Decimal("1035.00"), Decimal("1150"), Decimal(0))
    zp = upstream_cost_draw(
        book=book,
        provider=zhipu,
        list_charge=Decimal("37.50"),
        currency="USD",
        at=when,
        idempotency_key="dev-1",
    )
    assert (zp.cost, zp.drawn_list, zp.accrued_payable) == (Decimal("37.50"), Decimal("37.50"), Decimal(0))
    an = upstream_cost_draw(
        book=book,
        provider=anthropic,
        list_charge=Decimal("100.00"),
        currency="USD",
        at=when,
        idempotency_key="acme-2",
    )
    assert (an.cost, an.drawn_list, an.accrued_payable, an.draws) == (
        Decimal("100.00"),
        Decimal(0),
        Decimal("100.00"),
        (),
    )
    # Ledger: cost of sales 1035 + 37.50 + 100 = 1172.50; prepayments 10000 - 1035 - 37.50 = 8927.50,
    # and that equals the credit left at cost: 8850 x 0.9 + 962.50 x 1 = 7965 + 962.50.
    assert balance(book, "cost_of_sales") == Decimal("1172.50")
    assert balance(book, "upstream_prepayments") == Decimal("8927.50")
    assert upstream_prepaid_at_cost(book=book, currency="USD") == Decimal("8927.50")
    assert balance(book, "upstream_payables", counterparty="provider:anthropic") == Decimal("100.00")
    assert upstream_payables(book=book, currency="USD") == Decimal("100.00")


@pytest.fixture
def two_purchases() -> tuple[object, object, QuotaPurchase, QuotaPurchase]:
    """A: paid 900 for 1000 (rate 0.9) expiring 2027-03-31, bought first; B: paid 480 for 600
    (rate 0.8) expiring 2026-12-31, bought later. B expires first, so B is drawn first."""
    book = BookFactory()
    vendor = ProviderFactory(code="glm")
    a = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("900.00"),
        credit=Decimal("1000"),
        currency="USD",
        purchased_at=at("2026-09-01T00:00:00"),
        expires_on=date(2027, 3, 31),
    )
    b = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("480.00"),
        credit=Decimal("600"),
        currency="USD",
        purchased_at=at("2026-09-10T00:00:00"),
        expires_on=date(2026, 12, 31),
    )
    return book, vendor, a, b


def test_fifo_by_expiry_across_two_rates_then_payable_at_list(two_purchases: tuple) -> None:
    book, vendor, a, b = two_purchases
    when = at("2026-10-15T00:00:00")
    first = upstream_cost_draw(
        book=book, provider=vendor, list_charge=Decimal("500"), currency="USD", at=when, idempotency_key="k1"
    )
    # 500 from B at 0.8 = 400.
    assert first.cost == Decimal("400")
    assert [(d.purchase_id, d.list_amount, d.cost_amount) for d in first.draws] == [
        (b.pk, Decimal("500"), Decimal("400"))
    ]
    second = upstream_cost_draw(
        book=book, provider=vendor, list_charge=Decimal("300"), currency="USD", at=when, idempotency_key="k2"
    )
    # B's last 100 at 0.8 = 80, then 200 of A at 0.9 = 180: 260.
    assert second.cost == Decimal("260")
    assert [(d.purchase_id, d.list_amount, d.cost_amount) for d in second.draws] == [
        (b.pk, Decimal("100"), Decimal("80")),
        (a.pk, Decimal("200"), Decimal("180")),
    ]
    third = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("1000.25"),
        currency="USD",
        at=when,
        idempotency_key="k3",
    )
    # A's last 800 at 0.9 = 720, then 200.25 with no credit left accrues at list: 920.25.
    assert (third.drawn_list, third.accrued_list, third.accrued_payable, third.cost) == (
        Decimal("800"),
        Decimal("200.25"),
        Decimal("200.25"),
        Decimal("920.25"),
    )
    # Books: cost of sales 400 + 260 + 920.25 = 1580.25; prepayments 1380 - 400 - 260 - 720 = 0.
    assert balance(book, "cost_of_sales") == Decimal("1580.25")
    assert balance(book, "upstream_prepayments") == Decimal(0)
    assert balance(book, "upstream_payables", counterparty="provider:glm") == Decimal("200.25")
    assert upstream_prepaid_at_cost(book=book, currency="USD") == Decimal(0)
    # One entry per call, three legs on the last: cost of sales, prepayments, payables.
    entry = JournalEntry.objects.get(pk=third.entry_id)
    assert sorted((p.ledger_account.code, p.side, p.amount) for p in entry.postings.all()) == [
        ("cost_of_sales", "debit", Decimal("920.25")),
        ("upstream_payables", "credit", Decimal("200.25")),
        ("upstream_prepayments", "credit", Decimal("720")),
    ]


def test_only_credit_that_exists_and_has_not_expired_at_the_call_is_drawn(two_purchases: tuple) -> None:
    book, vendor, a, b = two_purchases
    # Before B was bought (Sept 5), only A exists.
    early = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("10"),
        currency="USD",
        at=at("2026-09-05T00:00:00"),
        idempotency_key="early",
    )
    assert [(d.purchase_id, d.cost_amount) for d in early.draws] == [(a.pk, Decimal("9"))]
    # From January 1 (UTC book) B has lapsed, even though its expiry is not booked yet.
    late = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("10"),
        currency="USD",
        at=at("2027-01-01T00:00:00"),
        idempotency_key="late",
    )
    assert [(d.purchase_id, d.cost_amount) for d in late.draws] == [(a.pk, Decimal("9"))]
    # After A lapses too, usage accrues at list.
    after = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("10"),
        currency="USD",
        at=at("2027-04-01T00:00:00"),
        idempotency_key="after",
    )
    assert (after.cost, after.accrued_payable, after.draws) == (Decimal("10"), Decimal("10"), ())


def test_a_replay_returns_the_first_result_without_drawing_again(two_purchases: tuple) -> None:
    book, vendor, a, b = two_purchases
    when = at("2026-10-15T00:00:00")
    first = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("50"),
        currency="USD",
        at=when,
        idempotency_key="req-9",
    )
    again = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("50.00"),
        currency="USD",
        at=when,
        idempotency_key="req-9",
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert (again.cost, again.drawn_list, again.draws, again.entry_id) == (
        Decimal("40"),
        Decimal("50"),
        first.draws,
        first.entry_id,
    )
    b.refresh_from_db()
    assert b.remaining_credit == Decimal("550")  # 600 - 50, drawn once
    assert QuotaDraw.objects.count() == 1
    assert balance(book, "cost_of_sales") == Decimal("40")
    with pytest.raises(Conflict, match="different content"):
        upstream_cost_draw(
            book=book,
            provider=vendor,
            list_charge=Decimal("51"),
            currency="USD",
            at=when,
            idempotency_key="req-9",
        )


def test_a_rate_that_does_not_terminate_still_reconciles_to_the_last_place() -> None:
    """paid 100.00 for 300 credit: rate 1/3. Costs are cumulative differences, so three draws of
    100 cost 33.333333333333333333, 33.333333333333333334 and 33.333333333333333333 = 100.00."""
    book = BookFactory()
    vendor = ProviderFactory()
    quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("100.00"),
        credit=Decimal("300"),
        currency="USD",
        purchased_at=at("2026-01-01T00:00:00"),
    )
    costs = [
        upstream_cost_draw(
            book=book,
            provider=vendor,
            list_charge=Decimal("100"),
            currency="USD",
            at=at("2026-02-01T00:00:00"),
            idempotency_key=f"third-{i}",
        ).cost
        for i in range(3)
    ]
    assert costs == [
        Decimal("33.333333333333333333"),
        Decimal("33.333333333333333334"),
        Decimal("33.333333333333333333"),
    ]
    assert balance(book, "upstream_prepayments") == Decimal(0)
    assert balance(book, "cost_of_sales") == Decimal("100.00")


def test_promotional_credit_is_drawn_at_no_cost_and_posts_nothing() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    promo = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal(0),
        credit=Decimal("50"),
        currency="USD",
        purchased_at=at("2026-01-01T00:00:00"),
        promotional=True,
    )
    assert promo.purchase_entry is None
    free = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("20"),
        currency="USD",
        at=at("2026-02-01T00:00:00"),
        idempotency_key="free",
    )
    assert (free.cost, free.drawn_list, free.entry_id) == (Decimal(0), Decimal("20"), None)
    # 30 of promo left, then 10 accrues at list: cost 10.
    mixed = upstream_cost_draw(
        book=book,
        provider=vendor,
        list_charge=Decimal("40"),
        currency="USD",
        at=at("2026-02-01T00:00:00"),
        idempotency_key="mixed",
    )
    assert (mixed.cost, mixed.drawn_list, mixed.accrued_payable) == (
        Decimal("10"),
        Decimal("30"),
        Decimal("10"),
    )
    assert JournalEntry.objects.filter(book=book).count() == 1


def test_the_batch_form_posts_one_entry_per_provider() -> None:
    book = BookFactory()
    p1, p2 = ProviderFactory(code="p1"), ProviderFactory(code="p2")
    quota_purchase_record(
        book=book,
        provider=p1,
        paid=Decimal("80.00"),
        credit=Decimal("100"),
        currency="USD",
        purchased_at=at("2026-01-01T00:00:00"),
    )
    when = at("2026-02-01T00:00:00")
    requests = [
        UpstreamCostRequest(
            provider=p1, list_charge=Decimal("10"), currency="USD", at=when, idempotency_key="b-1"
        ),
        UpstreamCostRequest(
            provider=p2, list_charge=Decimal("5"), currency="USD", at=when, idempotency_key="b-2"
        ),
        UpstreamCostRequest(
            provider=p1, list_charge=Decimal("20"), currency="USD", at=when, idempotency_key="b-3"
        ),
        UpstreamCostRequest(
            provider=p1, list_charge=Decimal("10"), currency="USD", at=when, idempotency_key="b-1"
        ),
    ]
    results = upstream_cost_draw_many(book=book, requests=requests)
    # p1: (10 + 20) x 0.8 = 24; p2 has no credit: 5 at list. The repeated b-1 is counted once.
    assert [r.cost for r in results] == [Decimal("8"), Decimal("5"), Decimal("16"), Decimal("8")]
    assert results[0].entry_id == results[2].entry_id != results[1].entry_id
    assert JournalEntry.objects.filter(book=book, source_type="upstream_charge").count() == 2
    assert balance(book, "cost_of_sales") == Decimal("29")
    # The whole batch again changes nothing.
    replay = upstream_cost_draw_many(book=book, requests=requests)
    assert [r.replayed for r in replay] == [True] * 4
    assert UpstreamCharge.objects.filter(book=book).count() == 3
    assert balance(book, "cost_of_sales") == Decimal("29")


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_drawing_more_than_the_credit() -> None:
    book = BookFactory()
    vendor = ProviderFactory()
    purchase = quota_purchase_record(
        book=book,
        provider=vendor,
        paid=Decimal("1.00"),
        credit=Decimal("1"),
        currency="USD",
        purchased_at=at("2026-01-01T00:00:00"),
    )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE procurement_quotapurchase SET remaining_credit = 2 WHERE id = %s", [purchase.pk])
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE procurement_quotapurchase SET remaining_credit = -1 WHERE id = %s", [purchase.pk])
