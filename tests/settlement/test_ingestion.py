"""Usage ingestion (§5): exactly-once landing, rejections that never block valid events, replays
that change nothing, and concurrent replays that count each event once.

The world is the public scenario's (scenarios/october-2026.yaml): platform (USD, UTC) resells
MiniMax and Zhipu; alpha -> beta -> acme is a postpaid chain, devsolo is prepaid at list + 5.5%.
The helpers here are shared by test_rating.py and test_authorization.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory
import pytest
from django.db import connection, connections, transaction

from settlement.models import UsageBatch, UsageEvent, UsageKey, UsageRollup
from settlement.services import usage_ingest
from settlement.services.ingestion import INGEST_SLOT_LOCK_CLASS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 10, 15, 10, 5, tzinfo=UTC)


@dataclass
class World:
    book: Any
    minimax: Any
    zhipu: Any
    alpha: Any
    beta: Any
    acme: Any
    devsolo: Any


def world_build(*, devsolo_topup: Decimal = Decimal("100.00")) -> World:
    """The scenario's book, providers, prices, accounts, purchases and devsolo's top-up."""
    from accounts.services import account_create, price_list_set, topup_record
    from ledger.services import book_create
    from procurement.services import (
        list_price_set,
        provider_create,
        provider_model_create,
        quota_purchase_record,
    )

    book = book_create(code="platform", name="Platform Ltd", currency="USD", timezone="UTC")
    minimax = provider_create(code="minimax", name="MiniMax", currency="USD")
    m25 = provider_model_create(provider=minimax, code="minimax-m2.5")
    list_price_set(
        model=m25,
        effective_from=T0,
        prices={"input": Decimal("0.30"), "cached_input": Decimal("0.03"), "output": Decimal("1.10")},
    )
    zhipu = provider_create(code="zhipu", name="Zhipu AI", currency="USD")
    glm = provider_model_create(provider=zhipu, code="glm-5")
    list_price_set(
        model=glm,
        effective_from=T0,
        prices={"input": Decimal("0.30"), "cached_input": Decimal("0.06"), "output": Decimal("2.55")},
    )
    alpha = account_create(
        root_book=book,
        code="alpha",
        name="Alpha Reseller",
        kind="distributor",
        currency="USD",
        terms="monthly",
        credit_limit=Decimal("50000.00"),
    )
    beta = account_create(
        root_book=book,
        code="beta",
        name="Beta Cloud",
        parent=alpha,
        kind="distributor",
        currency="USD",
        terms="monthly",
        credit_limit=Decimal("20000.00"),
    )
    acme = account_create(
        root_book=book,
        code="acme",
        name="Acme Corp",
        parent=beta,
        kind="customer",
        currency="USD",
        terms="monthly",
        net_days=15,
        credit_limit=Decimal("10000.00"),
        tax_rate=Decimal("0.06"),
    )
    devsolo = account_create(
        root_book=book, code="devsolo", name="Dev Solo", kind="customer", currency="USD", terms="prepaid"
    )
    price_list_set(account=alpha, effective_from=T0, rule="discount", rate=Decimal("0.08"))
    price_list_set(account=beta, effective_from=T0, rule="discount", rate=Decimal("0.04"))
    price_list_set(account=acme, effective_from=T0, rule="discount", rate=Decimal("0"))
    price_list_set(account=devsolo, effective_from=T0, rule="markup", rate=Decimal("0.055"))
    quota_purchase_record(
        book=book,
        provider=minimax,
        paid=Decimal("9000.00"),
        credit=Decimal("10000.00"),
        currency="USD",
        purchased_at=datetime(2026, 9, 25, tzinfo=UTC),
        expires_on=datetime(2027, 3, 31).date(),
    )
    quota_purchase_record(
        book=book,
        provider=zhipu,
        paid=Decimal("1000.00"),
        credit=Decimal("1000.00"),
        currency="USD",
        purchased_at=datetime(2026, 9, 25, tzinfo=UTC),
    )
    if devsolo_topup:
        topup_record(
            account=devsolo, amount=devsolo_topup, at=datetime(2026, 10, 1, tzinfo=UTC), reference="CARD-0001"
        )
    for account in (alpha, beta, acme, devsolo):
        account.refresh_from_db()
    return World(book, minimax, zhipu, alpha, beta, acme, devsolo)


class UsageEventFactory(factory.DictFactory):
    """One gateway event as JSON would carry it."""

    request_id = factory.Sequence(lambda n: f"req-{n}")
    account = "acme"
    model = "minimax-m2.5"
    input_tokens = 1000
    output_tokens = 100
    occurred_at = "2026-10-15T10:00:00Z"


def acme_big_call() -> dict[str, Any]:
    return UsageEventFactory(request_id="acme-1", input_tokens=2_000_000_000, output_tokens=500_000_000)


def devsolo_calls(n: int = 1000) -> list[dict[str, Any]]:
    """The scenario's generated batch: n glm-5 calls of 40,000 input + 10,000 output, spread over
    2026-10-02 .. 2026-10-29 (one every ~40 minutes)."""
    start = datetime(2026, 10, 2, tzinfo=UTC).timestamp()
    span = datetime(2026, 10, 30, tzinfo=UTC).timestamp() - start
    return [
        UsageEventFactory(
            request_id=f"devsolo-{i:04d}",
            account="devsolo",
            model="glm-5",
            input_tokens=40_000,
            output_tokens=10_000,
            occurred_at=datetime.fromtimestamp(start + span * i / n, tz=UTC).isoformat(),
        )
        for i in range(n)
    ]


@pytest.fixture
def world(db: None) -> World:
    return world_build()


def ingest_concurrently(
    batches: list[list[dict[str, Any]]], *, received_at: datetime = RECEIVED
) -> list[Any]:
    """Each batch from a thread of its own (so a connection of its own), all released at once by a
    barrier; the results in the order they finished. A thread's failure fails the caller. Needs a
    transactional test (django_db(transaction=True)): the threads see only committed rows."""
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def send(events: list[dict[str, Any]]) -> None:
        try:
            barrier.wait()
            results.append(usage_ingest(events=events, service=True, received_at=received_at))
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def truncate_events() -> None:
    with connection.cursor() as cursor:
        # The event table is not Django-managed, so the test flush leaves it: empty it here.
        cursor.execute("TRUNCATE settlement_usageevent")


def counts(result: Any) -> tuple[int, int, int]:
    return (result.accepted, result.duplicates, result.rejected)


def test_a_clean_batch_lands_every_event_once(world: World) -> None:
    events = [UsageEventFactory() for _ in range(5)]
    result = usage_ingest(events=events, service=True, received_at=RECEIVED)
    assert counts(result) == (5, 0, 0)
    assert UsageKey.objects.count() == 5
    assert UsageEvent.objects.filter(account_id=world.acme.pk).count() == 5
    batch = UsageBatch.objects.get(pk=result.batch_id)
    assert (batch.accepted, batch.duplicates, batch.rejected) == (5, 0, 0)


def test_rejections_name_the_event_and_never_block_the_valid_ones(world: World) -> None:
    events = [
        UsageEventFactory(request_id="ok-1"),
        UsageEventFactory(request_id="bad-account", account="nobody"),
        UsageEventFactory(request_id="bad-model", model="gpt-99"),
        UsageEventFactory(request_id="negative", input_tokens=-5),
        # minimax-m2.5 has no cache_write price, so cache_write tokens cannot be rated.
        UsageEventFactory(request_id="unpriced", cache_write_tokens=10),
        # Before 2026-01-01 no list price was in force.
        UsageEventFactory(request_id="too-early", occurred_at="2025-12-31T23:00:00Z"),
        UsageEventFactory(request_id="future", occurred_at="2026-10-15T10:10:01Z"),
        UsageEventFactory(request_id="ok-2"),
    ]
    result = usage_ingest(events=events, service=True, received_at=RECEIVED)
    assert counts(result) == (2, 0, 6)
    assert result.rejections == [
        {
            "index": 1,
            "request_id": "bad-account",
            "code": "unknown_account",
            "reason": "unknown account 'nobody'",
        },
        {"index": 2, "request_id": "bad-model", "code": "unknown_model", "reason": "unknown model 'gpt-99'"},
        {
            "index": 3,
            "request_id": "negative",
            "code": "negative_tokens",
            "reason": "input_tokens must not be negative",
        },
        {
            "index": 4,
            "request_id": "unpriced",
            "code": "no_price",
            "reason": "no price for cache_write tokens of minimax-m2.5 at 2026-10-15T10:00:00Z",
        },
        {
            "index": 5,
            "request_id": "too-early",
            "code": "no_price",
            "reason": "no price for minimax-m2.5 at 2025-12-31T23:00:00Z",
        },
        {
            "index": 6,
            "request_id": "future",
            "code": "future_timestamp",
            "reason": "occurred_at is more than 5 minutes after the batch was received",
        },
    ]
    assert sorted(UsageKey.objects.values_list("request_id", flat=True)) == ["ok-1", "ok-2"]


def test_an_accounts_own_key_posts_only_inside_its_subtree(world: World) -> None:
    events = [
        UsageEventFactory(request_id="mine", account=None),  # defaults to the caller, beta
        UsageEventFactory(request_id="child", account="acme"),
        UsageEventFactory(request_id="parent", account="alpha"),
        UsageEventFactory(request_id="sibling", account="devsolo"),
    ]
    events[0].pop("account")
    result = usage_ingest(events=events, caller_account=world.beta, received_at=RECEIVED)
    assert counts(result) == (2, 0, 2)
    assert [(r["index"], r["code"], r["reason"]) for r in result.rejections] == [
        (2, "out_of_scope", "account 'alpha' is outside the caller's scope"),
        (3, "out_of_scope", "account 'devsolo' is outside the caller's scope"),
    ]
    assert set(UsageKey.objects.values_list("account_id", "request_id")) == {
        (world.beta.pk, "mine"),
        (world.acme.pk, "child"),
    }


def test_duplicates_are_counted_once_and_conflicts_refused(world: World) -> None:
    first = usage_ingest(events=[UsageEventFactory(request_id="a")], service=True, received_at=RECEIVED)
    assert counts(first) == (1, 0, 0)
    events = [
        UsageEventFactory(request_id="a"),  # same content as before: duplicate
        UsageEventFactory(request_id="a", occurred_at="2026-10-15T18:00:00+08:00"),  # same instant
        UsageEventFactory(request_id="a", output_tokens=101),  # different content: conflict
        UsageEventFactory(request_id="b"),
        UsageEventFactory(request_id="b"),  # repeated inside the batch: duplicate
        UsageEventFactory(request_id="b", input_tokens=1),  # inside the batch, different: conflict
    ]
    result = usage_ingest(events=events, service=True, received_at=RECEIVED)
    assert counts(result) == (1, 3, 2)
    assert [(r["index"], r["code"], r["reason"]) for r in result.rejections] == [
        (2, "conflict", "request_id 'a' was already used with different content"),
        (5, "conflict", "request_id 'b' was already used with different content"),
    ]
    # One key per request id; the same request id under another account is another call.
    assert UsageKey.objects.count() == 2
    other = usage_ingest(
        events=[UsageEventFactory(request_id="a", account="devsolo")], service=True, received_at=RECEIVED
    )
    assert counts(other) == (1, 0, 0)


def test_a_replay_is_compared_with_the_event_its_key_landed(world: World) -> None:
    tagged = {"project": "p1", "team": "t1"}
    first = usage_ingest(
        events=[
            *(UsageEventFactory(request_id=f"t{i}", tags=tagged) for i in (1, 2, 3)),
            *(UsageEventFactory(request_id=f"u{i}", occurred_at="2026-10-15T10:00:00Z") for i in (1, 2)),
        ],
        service=True,
        received_at=RECEIVED,
    )
    assert counts(first) == (5, 0, 0)
    events = [
        UsageEventFactory(request_id="t1", tags={"team": "t1", "project": "p1"}),  # keys reordered: same
        UsageEventFactory(request_id="t2", tags={"project": "p1"}),  # a tag less: conflict
        UsageEventFactory(request_id="t3"),  # no tags at all: conflict
        UsageEventFactory(request_id="u1", occurred_at="2026-10-15T10:00:00.001Z"),  # a millisecond later
        UsageEventFactory(request_id="u2", occurred_at="2026-10-15T12:00:00+02:00"),  # the same instant
    ]
    result = usage_ingest(events=events, service=True, received_at=RECEIVED)
    assert counts(result) == (0, 2, 3)
    assert [(r["index"], r["code"]) for r in result.rejections] == [
        (1, "conflict"),
        (2, "conflict"),
        (3, "conflict"),
    ]


def test_a_replay_of_several_earlier_batches_across_months_finds_each_original(world: World) -> None:
    """The replay comparison looks originals up by their keys' batches (the event table's BRIN
    index) within the keys' occurred_at range: here two batches, two monthly partitions."""
    late_october = [
        UsageEventFactory(request_id=f"o{i}", occurred_at=f"2026-10-31T2{i}:00:00Z") for i in range(3)
    ]
    early_november = [
        UsageEventFactory(request_id=f"n{i}", occurred_at=f"2026-11-01T0{i}:00:00Z") for i in range(3)
    ]
    received = datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert counts(usage_ingest(events=late_october, service=True, received_at=received)) == (3, 0, 0)
    assert counts(usage_ingest(events=early_november, service=True, received_at=received)) == (3, 0, 0)
    # Re-batched by the gateway: both batches' events in one, one of each changed, one new event.
    replay = [
        *late_october[:2],
        {**late_october[2], "output_tokens": 99},
        {**early_november[0], "occurred_at": "2026-11-01T00:00:01Z"},
        *early_november[1:],
        UsageEventFactory(request_id="fresh", occurred_at="2026-11-01T05:00:00Z"),
    ]
    result = usage_ingest(events=replay, service=True, received_at=received)
    assert counts(result) == (1, 4, 2)
    assert [(r["index"], r["request_id"], r["code"]) for r in result.rejections] == [
        (2, "o2", "conflict"),
        (3, "n0", "conflict"),
    ]
    assert UsageEvent.objects.count() == 7


def test_a_price_change_reprices_the_next_batch_of_the_same_day(world: World) -> None:
    """Cascades are remembered between batches (rating.RatingMemo) under the rating revision;
    a new price list version bumps it, so the next batch of the same day is priced anew, while a
    status change (which prices nothing) leaves the remembered cascades in place."""
    from accounts.services import account_update, price_list_set
    from settlement.services.rating import rating_memo, rating_revision

    first = usage_ingest(
        events=[UsageEventFactory(request_id="p-1", occurred_at="2026-10-15T09:00:00Z")],
        service=True,
        received_at=RECEIVED,
    )
    assert counts(first) == (1, 0, 0)
    revision = rating_revision()
    memo = rating_memo()
    remembered = dict(memo.cascades)
    assert remembered and memo.payers
    account_update(account=world.acme, status="on_hold")
    account_update(account=world.acme, status="active", credit_limit=Decimal("12000.00"))
    assert rating_revision() == revision
    assert rating_memo() is memo
    price_list_set(
        account=world.acme,
        effective_from=datetime(2026, 10, 15, tzinfo=UTC),
        rule="markup",
        rate=Decimal("0.10"),
    )
    assert rating_revision() != revision
    # A new memo for the new revision; the old one is left as it was for a batch still using it.
    assert rating_memo() is not memo
    assert rating_memo().cascades == {}
    assert memo.cascades == remembered
    second = usage_ingest(
        events=[UsageEventFactory(request_id="p-2", occurred_at="2026-10-15T10:01:00Z")],
        service=True,
        received_at=RECEIVED,
    )
    assert counts(second) == (1, 0, 0), second.rejections
    # acme pays beta: list 0.30 / 1.10 at a 0% discount, then list + 10% from 15 October.
    assert sorted(
        UsageRollup.objects.filter(payer_account_id=world.acme.pk).values_list(
            "token_class", "unit_price", "tokens"
        )
    ) == [
        ("input", Decimal("0.3000000000"), 1000),
        ("input", Decimal("0.3300000000"), 1000),
        ("output", Decimal("1.1000000000"), 100),
        ("output", Decimal("1.2100000000"), 100),
    ]


def test_an_account_remembered_from_a_rolled_back_transaction_is_forgotten(world: World) -> None:
    """The worker remembers account codes; an account whose creation rolled back must not be
    remembered when an account of that code is opened again (with another id)."""
    from django.db import transaction

    from accounts.services import account_create, price_list_set

    def open_newco() -> Any:
        newco = account_create(
            root_book=world.book, code="newco", name="NewCo", kind="customer", currency="USD", terms="monthly"
        )
        price_list_set(account=newco, effective_from=T0, rule="markup", rate=Decimal("0"))
        return newco

    call = UsageEventFactory(request_id="n-1", account="newco")
    with pytest.raises(RuntimeError), transaction.atomic():
        open_newco()
        assert counts(usage_ingest(events=[call], service=True, received_at=RECEIVED)) == (1, 0, 0)
        raise RuntimeError("roll back")
    newco = open_newco()
    assert counts(usage_ingest(events=[call], service=True, received_at=RECEIVED)) == (1, 0, 0)
    assert list(UsageEvent.objects.values_list("account_id", flat=True)) == [newco.pk]


def _rollup_state() -> list[tuple[Any, ...]]:
    return list(
        UsageRollup.objects.order_by("id").values_list("payer_account_id", "token_class", "tokens", "amount")
    )


def test_a_replayed_batch_changes_nothing(world: World) -> None:
    events = [acme_big_call(), *devsolo_calls(20)]
    at = datetime(2026, 10, 30, tzinfo=UTC)
    first = usage_ingest(events=events, service=True, received_at=at)
    assert counts(first) == (21, 0, 0)
    rollups = _rollup_state()
    from ledger.models import JournalEntry

    entries = JournalEntry.objects.count()
    replay = usage_ingest(events=events, service=True, received_at=at)
    assert counts(replay) == (0, 21, 0)
    assert _rollup_state() == rollups
    assert JournalEntry.objects.count() == entries
    assert UsageEvent.objects.count() == 21


def test_events_land_in_monthly_partitions_created_on_demand(world: World) -> None:
    events = [
        UsageEventFactory(request_id="oct", occurred_at="2026-10-31T23:59:59Z"),
        UsageEventFactory(request_id="nov", occurred_at="2026-11-01T00:00:00Z"),
    ]
    result = usage_ingest(events=events, service=True, received_at=datetime(2026, 11, 1, 0, 1, tzinfo=UTC))
    assert counts(result) == (2, 0, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT request_id, tableoid::regclass::text FROM settlement_usageevent ORDER BY 1")
        assert cursor.fetchall() == [
            ("nov", "settlement_usageevent_y2026m11"),
            ("oct", "settlement_usageevent_y2026m10"),
        ]


def test_the_database_refuses_edits_of_landed_events(world: World) -> None:
    usage_ingest(events=[UsageEventFactory(request_id="x")], service=True, received_at=RECEIVED)
    from django.db import DatabaseError, transaction

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE settlement_usageevent SET output_tokens = 0")


def test_a_batch_over_10000_events_is_refused_whole(world: World) -> None:
    from distributor.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="at most 10000 events"):
        usage_ingest(events=[{}] * 10_001, service=True, received_at=RECEIVED)
    assert UsageBatch.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_from_four_connections_count_each_event_once() -> None:
    world = world_build()
    events = [UsageEventFactory(request_id=f"c-{i}", input_tokens=1_000_000) for i in range(200)]
    try:
        results = ingest_concurrently([events] * 4)
        assert sum(r.accepted for r in results) == 200
        assert sum(r.duplicates for r in results) == 600
        # acme's input line: 200 x 1,000,000 tokens at 0.30 per 1M = 60.00, counted once.
        line = UsageRollup.objects.get(payer_account_id=world.acme.pk, token_class="input")
        assert (line.tokens, line.amount) == (200_000_000, Decimal("60"))
    finally:
        truncate_events()


def test_partitions_are_made_ahead_once(db: None) -> None:
    from settlement.services import usage_partitions_ahead
    from settlement.tasks import usage_partitions_ensure_task

    assert usage_partitions_ahead(today=datetime(2031, 1, 15).date(), months_ahead=2) == [
        "settlement_usageevent_y2031m01",
        "settlement_usageevent_y2031m02",
        "settlement_usageevent_y2031m03",
    ]
    assert usage_partitions_ahead(today=datetime(2031, 2, 1).date(), months_ahead=1) == []
    # The beat task runs the same service for the current month and the next three.
    assert len(usage_partitions_ensure_task.delay().get()) <= 4


@pytest.mark.django_db(transaction=True)
def test_a_batch_waits_for_an_ingestion_slot_and_lands_when_one_frees(settings: Any) -> None:
    """settings.USAGE_INGEST_CONCURRENCY transactions ingest at once; another batch waits (holding
    no lock and no snapshot) until one of them ends, then lands whole."""
    settings.USAGE_INGEST_CONCURRENCY = 2
    world_build()
    events = [UsageEventFactory(request_id=f"s-{i}") for i in range(3)]
    outcome: list[Any] = []
    sender = threading.Thread(target=lambda: outcome.extend(ingest_concurrently([events])))
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Another connection's transactions hold both slots.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, 0), pg_advisory_xact_lock(%s, 1)",
                [INGEST_SLOT_LOCK_CLASS, INGEST_SLOT_LOCK_CLASS],
            )
            sender.start()
            sender.join(timeout=0.5)
            assert sender.is_alive() and outcome == []
            # The waiting batch holds no snapshot (but for the instant of each try): nothing keeps
            # old row versions from being pruned while it waits. (Client backends only: an
            # autovacuum worker of this database holds one while it runs.)
            holding = []
            for _ in range(10):
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                    " AND backend_xmin IS NOT NULL"
                )
                holding.append(cursor.fetchone()[0])
                time.sleep(0.02)
            assert holding.count(0) >= 8, holding
        sender.join(timeout=30)
        assert [counts(r) for r in outcome] == [(3, 0, 0)]
        # One slot free: the next batch takes it at once.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [INGEST_SLOT_LOCK_CLASS])
            again = ingest_concurrently([[UsageEventFactory(request_id="s-9")]])
            assert [counts(r) for r in again] == [(1, 0, 0)]
    finally:
        truncate_events()
