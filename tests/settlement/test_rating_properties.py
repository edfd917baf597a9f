"""Properties of rating (§4, §5) over random traffic, with hypothesis: however events are split
into batches, replayed or spread over a month boundary in a non-UTC book, each hop's daily rollups
hold exactly tokens x unit price, the monthly accruals equal the daily rows they summarise, each
hop is billed its subtree's tokens, and unbilled usage is everything postpaid (nothing issued).

One world per test, examples accumulate in it (request ids are unique per example), so every
invariant is checked on the running totals: a wrong increment anywhere shows up."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Account
from settlement.models import UsageAccrual, UsageEvent, UsageRollup
from settlement.selectors import unbilled_by_payer
from settlement.services.ingestion import usage_ingest
from tests.settlement.test_close_world import World, world_build

MILLION = Decimal(1_000_000)
_examples = itertools.count()

# Shanghai midnight is 16:00 UTC: events from 29 Oct to 3 Nov cross the month in the book's zone
# at a different instant than in UTC.
START = datetime(2026, 10, 29, tzinfo=UTC)

events = st.lists(
    st.fixed_dictionaries(
        {
            "account": st.sampled_from(["acme", "acme", "beta", "alpha"]),
            "model": st.sampled_from(["minimax-m2.5", "glm-5", "claude-opus-4.6"]),
            "input_tokens": st.integers(0, 5_000_000),
            "output_tokens": st.integers(0, 2_000_000),
            "minutes": st.integers(0, 6 * 24 * 60),
        }
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture
def shanghai_world(db: None) -> World:
    return world_build(timezone="Asia/Shanghai")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=events, split=st.integers(1, 4), replay=st.booleans())
def test_rollups_and_accruals_add_up_however_batches_are_cut(
    shanghai_world: World, batch: list[dict[str, object]], split: int, replay: bool
) -> None:
    example = next(_examples)
    gateway = [
        {
            "request_id": f"p{example}-{i}",
            "account": e["account"],
            "model": e["model"],
            "input_tokens": e["input_tokens"],
            "output_tokens": e["output_tokens"],
            "occurred_at": (START + timedelta(minutes=int(e["minutes"]))).isoformat(),  # type: ignore[call-overload]
        }
        for i, e in enumerate(batch)
    ]
    received = START + timedelta(days=7)
    for part in range(split):
        result = usage_ingest(events=gateway[part::split], service=True, received_at=received)
        assert result.rejected == 0, result.rejections
    if replay:
        again = usage_ingest(events=gateway, service=True, received_at=received)
        assert (again.accepted, again.duplicates) == (0, len(gateway))

    # Each daily row is exactly its tokens at its unit price.
    for tokens, unit_price, amount in UsageRollup.objects.values_list("tokens", "unit_price", "amount"):
        assert amount == tokens * unit_price / MILLION

    # The monthly accruals are the postpaid daily rows, summed per month, model, class and price.
    daily: dict[tuple[object, ...], list[object]] = defaultdict(lambda: [0, Decimal(0), None])
    for payer, day, model_id, token_class, unit_price, tokens, amount in UsageRollup.objects.filter(
        prepaid=False
    ).values_list("payer_account_id", "day", "model_id", "token_class", "unit_price", "tokens", "amount"):
        row = daily[(payer, day.replace(day=1), model_id, token_class, unit_price)]
        row[0] += tokens  # type: ignore[operator]
        row[1] += amount  # type: ignore[operator]
        row[2] = day if row[2] is None else min(row[2], day)  # type: ignore[type-var]
    monthly = {
        (payer, month, model_id, token_class, unit_price): [tokens, amount, first]
        for payer, month, model_id, token_class, unit_price, tokens, amount, first in UsageAccrual.objects.values_list(
            "payer_account_id",
            "month",
            "model_id",
            "token_class",
            "unit_price",
            "tokens",
            "amount",
            "first_day",
        )
    }
    assert monthly == dict(daily)

    # Every hop is billed the usage of its whole subtree: acme pays beta for acme's calls, beta pays
    # alpha for beta's and acme's, alpha pays the root for all three.
    ancestors = dict(Account.objects.values_list("pk", "ancestor_ids"))
    expected: Counter[tuple[int, str]] = Counter()
    for account_id, input_tokens, output_tokens in UsageEvent.objects.values_list(
        "account_id", "input_tokens", "output_tokens"
    ):
        for payer in (account_id, *(ancestors[account_id] or ())):
            expected[(payer, "input")] += input_tokens
            expected[(payer, "output")] += output_tokens
    billed = {
        (payer, token_class): tokens
        for payer, token_class, tokens in UsageRollup.objects.values("payer_account_id", "token_class")
        .annotate(tokens=Sum("tokens"))
        .values_list("payer_account_id", "token_class", "tokens")
    }
    assert billed == {key: tokens for key, tokens in expected.items() if key in billed or tokens}

    # Nothing is issued: every postpaid amount is unbilled.
    postpaid = dict(
        UsageRollup.objects.filter(prepaid=False)
        .values("payer_account_id")
        .annotate(total=Sum("amount"))
        .values_list("payer_account_id", "total")
    )
    assert unbilled_by_payer(payer_account_ids=postpaid) == {p: t for p, t in postpaid.items() if t}


ZONES = ["UTC", "Asia/Shanghai", "Asia/Kathmandu", "Asia/Kolkata", "America/St_Johns", "Europe/Berlin"]


@settings(max_examples=300, deadline=None)
@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(1965, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
        ),
        min_size=1,
        max_size=30,
    ),
    zone_names=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3),
)
def test_day_starts_remembered_per_quarter_hour_equal_the_direct_computation(
    moments: list[datetime], zone_names: list[str]
) -> None:
    """DayStarts (ingestion's per-batch memo) answers what day_start answers, for any instant and
    zone, including zones at +5:45 and -3:30 and daylight saving changes."""
    from settlement.services.rating import DayStarts, day_start, zone

    memo = DayStarts()
    # Neighbours of each moment share its quarter hour (or the next), so the memo is exercised.
    for moment in moments:
        for nearby in (moment, moment + timedelta(minutes=7), moment - timedelta(seconds=1)):
            for name in zone_names:
                assert memo(nearby, zone(name)) == day_start(nearby, zone(name))
