"""Cascade rating as usage lands (§4, §5, §11.5, §11.12), on the public scenario's figures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from ledger.models import AccountBalance
from settlement.models import UpstreamCostRollup, UsageRollup
from settlement.services import usage_ingest
from tests.settlement.test_ingestion import (
    RECEIVED,
    UsageEventFactory,
    World,
    acme_big_call,
    devsolo_calls,
    ingest_concurrently,
    truncate_events,
    world_build,
)


@pytest.fixture
def world(db: None) -> World:
    return world_build()


def balance(book_id: int, code: str, counterparty: str) -> Decimal:
    row = AccountBalance.objects.filter(
        ledger_account__book_id=book_id, ledger_account__code=code, counterparty=counterparty
    ).first()
    if row is None:
        return Decimal(0)
    return row.debits - row.credits


def lines(payer_id: int) -> list[tuple[str, Decimal, int, Decimal]]:
    return [
        (r.token_class, r.unit_price.normalize(), r.tokens, r.amount)
        for r in UsageRollup.objects.filter(payer_account_id=payer_id).order_by("token_class")
    ]


def test_acme_call_is_rated_at_every_hop_of_the_cascade(world: World) -> None:
    result = usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    assert result.accepted == 1
    # acme pays beta list (discount 0): 2,000,000,000 x 0.30 / 1M = 600; 500,000,000 x 1.10 / 1M = 550.
    assert lines(world.acme.pk) == [
        ("input", Decimal("0.3"), 2_000_000_000, Decimal("600")),
        ("output", Decimal("1.1"), 500_000_000, Decimal("550")),
    ]
    # beta pays alpha list - 4%: 0.288 -> 576; 1.056 -> 528.
    assert lines(world.beta.pk) == [
        ("input", Decimal("0.288"), 2_000_000_000, Decimal("576")),
        ("output", Decimal("1.056"), 500_000_000, Decimal("528")),
    ]
    # alpha pays the root list - 8%: 0.276 -> 552; 1.012 -> 506.
    assert lines(world.alpha.pk) == [
        ("input", Decimal("0.276"), 2_000_000_000, Decimal("552")),
        ("output", Decimal("1.012"), 500_000_000, Decimal("506")),
    ]
    # Each hop is owed to its parent's book; alpha's to the root's.
    acme_line = UsageRollup.objects.filter(payer_account_id=world.acme.pk).first()
    alpha_line = UsageRollup.objects.filter(payer_account_id=world.alpha.pk).first()
    assert acme_line is not None and alpha_line is not None
    assert acme_line.payee_book_id == world.beta.own_book_id
    assert alpha_line.payee_book_id == world.book.pk
    assert {r.day for r in UsageRollup.objects.all()} == {date(2026, 10, 15)}
    assert not UsageRollup.objects.filter(prepaid=True).exists()


def test_platform_upstream_cost_draws_the_minimax_quota_at_paid_over_credit(world: World) -> None:
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    cost = UpstreamCostRollup.objects.get(book=world.book, model_code="minimax-m2.5")
    # List charge 600 + 550 = 1150, drawn from the 9000-for-10000 purchase: 1150 x 0.9 = 1035.00.
    assert (cost.list_charge, cost.cost, cost.accrued_list) == (
        Decimal("1150"),
        Decimal("1035"),
        Decimal("0"),
    )
    assert (cost.input_tokens, cost.output_tokens, cost.day) == (
        2_000_000_000,
        500_000_000,
        date(2026, 10, 15),
    )


def test_postpaid_hops_post_nothing_at_ingestion(world: World) -> None:
    from ledger.models import JournalEntry

    before = JournalEntry.objects.filter(source_type="usage_batch").count()
    usage_ingest(events=[acme_big_call()], service=True, received_at=RECEIVED)
    assert JournalEntry.objects.filter(source_type="usage_batch").count() == before


def test_many_events_aggregate_into_few_rollup_rows(world: World) -> None:
    usage_ingest(events=devsolo_calls(1000), service=True, received_at=datetime(2026, 10, 30, tzinfo=UTC))
    # 1000 calls spread over 28 days, two priced classes: 28 days x 2 classes = 56 rows for devsolo.
    assert UsageRollup.objects.filter(payer_account_id=world.devsolo.pk).count() == 56
    totals = UsageRollup.objects.filter(payer_account_id=world.devsolo.pk)
    assert sum(r.tokens for r in totals if r.token_class == "input") == 40_000_000
    assert sum(r.tokens for r in totals if r.token_class == "output") == 10_000_000


def test_devsolo_prepaid_drawdown_leaves_60_4375_in_the_wallet(world: World) -> None:
    result = usage_ingest(
        events=devsolo_calls(1000), service=True, received_at=datetime(2026, 10, 30, tzinfo=UTC)
    )
    assert result.accepted == 1000
    # list + 5.5%: input 0.30 x 1.055 = 0.3165, output 2.55 x 1.055 = 2.69025 per 1M.
    # 40,000,000 x 0.3165 / 1M = 12.66; 10,000,000 x 2.69025 / 1M = 26.9025; drawdown 39.5625.
    rows = UsageRollup.objects.filter(payer_account_id=world.devsolo.pk)
    assert sum(r.amount for r in rows) == Decimal("39.5625")
    assert all(r.prepaid for r in rows)
    counterparty = "account:devsolo"
    # Wallet (credit-normal deposits): 100 - 39.5625 = 60.4375; revenue 39.5625; no receivable.
    assert -balance(world.book.pk, "customer_deposits", counterparty) == Decimal("60.4375")
    assert -balance(world.book.pk, "revenue", counterparty) == Decimal("39.5625")
    assert balance(world.book.pk, "receivables", counterparty) == 0
    from accounts.selectors import wallet_balance

    assert wallet_balance(account=world.devsolo) == Decimal("60.4375")
    # Zhipu's upstream cost at 1000/1000: 40M x 0.30 / 1M + 10M x 2.55 / 1M = 12 + 25.5 = 37.5.
    upstream = UpstreamCostRollup.objects.filter(book=world.book, model_code="glm-5")
    assert sum(u.cost for u in upstream) == Decimal("37.5")


@pytest.mark.django_db
def test_a_prepaid_shortfall_becomes_a_receivable_and_the_wallet_stops_at_zero() -> None:
    w = world_build(devsolo_topup=Decimal("10.00"))
    usage_ingest(events=devsolo_calls(1000), service=True, received_at=datetime(2026, 10, 30, tzinfo=UTC))
    counterparty = "account:devsolo"
    # Usage 39.5625 against a wallet of 10.00: 10.00 from the wallet, 29.5625 becomes a receivable.
    assert balance(w.book.pk, "customer_deposits", counterparty) == 0
    assert balance(w.book.pk, "receivables", counterparty) == Decimal("29.5625")
    assert -balance(w.book.pk, "revenue", counterparty) == Decimal("39.5625")
    # A second batch finds an empty wallet: all of it (one call, 0.3165 x 0.04 + 2.69025 x 0.01
    # = 0.01266 + 0.0269025 = 0.0395625) goes to receivables.
    usage_ingest(
        events=[
            UsageEventFactory(
                request_id="late", account="devsolo", model="glm-5", input_tokens=40_000, output_tokens=10_000
            )
        ],
        service=True,
        received_at=RECEIVED,
    )
    assert balance(w.book.pk, "customer_deposits", counterparty) == 0
    assert balance(w.book.pk, "receivables", counterparty) == Decimal("29.6020625")


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_never_spend_the_same_wallet_twice() -> None:
    """Four connections each land a different devsolo batch against a 10.00 wallet."""
    w = world_build(devsolo_topup=Decimal("10.00"))
    calls = devsolo_calls(400)
    try:
        ingest_concurrently(
            [calls[part * 100 : (part + 1) * 100] for part in range(4)],
            received_at=datetime(2026, 10, 30, tzinfo=UTC),
        )
        counterparty = "account:devsolo"
        # 400 calls x 0.0395625 = 15.825 of usage: 10.00 from the wallet, 5.825 receivable, never
        # a negative wallet whatever the order the batches committed in.
        assert balance(w.book.pk, "customer_deposits", counterparty) == 0
        assert balance(w.book.pk, "receivables", counterparty) == Decimal("5.825")
        assert -balance(w.book.pk, "revenue", counterparty) == Decimal("15.825")
    finally:
        truncate_events()
