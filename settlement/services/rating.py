"""Cascade rating of newly landed usage (§4, §5, §11.5, §11.12).

Every new event is rated at each hop of its account's cascade: the leaf owes its parent at the
leaf's price, the parent owes its own parent at its price, up to the root's direct child. The batch
is aggregated in Python first (per payer, model, day, token class and unit price), then each rollup
table gets one upsert statement, so a batch of 10,000 events touches hundreds of rows, not thousands.
Amounts are exact: tokens x unit price / 1,000,000, never rounded (§2).

The root's side of the cascade is the upstream cost: one draw from the provider's prepaid quota per
(root book, provider, model, day) and batch. Prepaid payers are drawn down as usage lands: one
ledger entry per payer and batch in the payee's book (§11.12); postpaid hops post nothing here (the
invoice books their revenue at the close).
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import connection

from distributor.sql import array_literal
from ledger.models import Book
from ledger.services import EntryDraft, credit, debit, entries_post_ids
from settlement.models import TOKEN_CLASSES
from settlement.selectors import DRAWDOWN_SOURCE
from settlement.services.validation import ParsedEvent

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Payer:
    """What rating and credit control need to know about an account of the tree."""

    id: int
    code: str
    currency: str
    book_id: int
    ancestor_ids: tuple[int, ...]


@dataclass(slots=True)
class RatingOutcome:
    """What a batch's rating changed, for the caller's report and the credit cache refresh."""

    rollup_rows: int = 0
    upstream_rows: int = 0
    drawdowns: dict[str, Decimal] = field(default_factory=dict)
    touched_account_ids: set[int] = field(default_factory=set)


_zones: dict[str, zoneinfo.ZoneInfo] = {}


def zone(name: str) -> zoneinfo.ZoneInfo:
    found = _zones.get(name)
    if found is None:
        found = _zones[name] = zoneinfo.ZoneInfo(name)
    return found


def books_load(book_ids: Iterable[int]) -> dict[int, Book]:
    """The books of a batch, read once: their zones name the days, and the upstream draw and the
    drawdowns post in them."""
    return Book.objects.in_bulk(set(book_ids))


def book_zones(books: dict[int, Book]) -> dict[int, zoneinfo.ZoneInfo]:
    return {pk: zone(book.timezone) for pk, book in books.items()}


def day_start(moment: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """The start of `moment`'s day in `tz`. Prices take effect at day starts in the book's zone, so
    one cascade lookup per (account, model, day) prices every event of that day."""
    return datetime.combine(moment.astimezone(tz).date(), time(0), tzinfo=tz)


# Since 1980 every zone's UTC offset is a whole number of quarter hours, so a local midnight falls
# on a quarter-hour boundary of UTC and every moment of one UTC quarter hour has the same local day.
class DayStarts:
    """day_start for one batch's events, computed once per (zone, UTC quarter hour): a batch's
    events fall in a few dozen quarter hours, and the time zone conversion is the costly part."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], datetime] = {}

    def __call__(self, moment: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
        # A UTC moment's quarter hour from its fields (half the cost of its timestamp); events
        # arrive as UTC instants, anything else takes the full conversion.
        if moment.tzinfo is not UTC or moment.year < 1980:
            return day_start(moment, tz)
        key = (tz, moment.year, moment.month, moment.day, moment.hour, moment.minute // 15)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = day_start(moment, tz)
        return found


CascadeKey = tuple[int, str, datetime]


class RatingMemo:
    """What this worker remembers between batches of what rating reads about the tree and prices:
    the accounts (id, code, currency, book, ancestors) and the cascades of prices per (account,
    model, day). A gateway's batches ask for the same few hundred accounts and the same (account,
    model, day) all day long; reading and pricing them again was about a fifth of a batch.

    One memo holds what was read under one rating revision (or later): migration 0009 bumps the
    revision in the same transaction as any change to what is remembered here, so `rating_memo`
    (once per batch) sees the change and the new revision together and starts a new memo. A memo
    is never emptied in place: a batch running in another thread of the worker keeps the one it
    started with (only adding to it), and nothing it adds reaches a memo of a later revision.
    Without a revision (its table missing) every batch gets a memo of its own, which remembers
    nothing past the batch. Status, limits and balances are never taken from here."""

    MAX_ENTRIES = 200_000

    def __init__(self, revision: int | None = None) -> None:
        self.revision = revision
        self.cascades: dict[CascadeKey, Any] = {}
        self.payers: dict[int, Payer] = {}
        self.payer_ids_by_code: dict[str, int] = {}
        self.unpriced_positions: dict[CascadeKey, tuple[int, ...]] = {}


_memo = RatingMemo()


def rating_memo() -> RatingMemo:
    """The worker's memo for the current revision (one small query): the same as the last batch's
    while the revision holds, a new empty one when it moved (or the old one grew too large)."""
    global _memo
    revision = rating_revision()
    current = _memo
    if revision is None or revision != current.revision or len(current.cascades) > RatingMemo.MAX_ENTRIES:
        current = _memo = RatingMemo(revision)
    return current


def rating_revision() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT revision FROM settlement_rating_revision")
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def cascades_load(keys: Iterable[CascadeKey], *, memo: RatingMemo) -> dict[CascadeKey, Any]:
    """The cascade of every distinct (account, model, day start) of the batch: the ones `memo`
    remembers, the others in one query. A key with no cascade (an unknown account or model) maps
    to nothing and is asked again next time."""
    from accounts.selectors import cascade_prices_many

    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    known = memo.cascades
    found = {key: known[key] for key in wanted if key in known}
    if len(found) < len(wanted):
        loaded = cascade_prices_many(requests=[key for key in wanted if key not in found])
        found.update(loaded)
        known.update(loaded)
    return found


def unpriced_positions(
    cascades: dict[CascadeKey, Any], *, memo: RatingMemo
) -> dict[CascadeKey, tuple[int, ...]]:
    """Per cascade with a list price in force, the positions (in TOKEN_CLASSES) of the token classes
    it cannot price: an event of that cascade is priced when it has no tokens there. Cascades with
    no list price in force are absent (nothing of theirs is priced)."""
    known = memo.unpriced_positions
    out: dict[CascadeKey, tuple[int, ...]] = {}
    for key, cascade in cascades.items():
        positions = known.get(key)
        if positions is None:
            if cascade is None or cascade.list_price_version_id is None:
                continue
            unpriced = unpriced_classes(cascade)
            positions = known[key] = tuple(i for i, c in enumerate(TOKEN_CLASSES) if c in unpriced)
        out[key] = positions
    return out


def price_problem(event: ParsedEvent, cascade: Any) -> str | None:
    """Why this event cannot be rated, or None: a class with tokens must be priced at every hop and
    upstream, at the time the call happened."""
    if cascade is None or cascade.list_price_version_id is None:
        return f"no price for {event.model_code} at {_when(event)}"
    unpriced = unpriced_classes(cascade)
    if unpriced:
        for token_class, tokens in zip(TOKEN_CLASSES, event.tokens, strict=True):
            if tokens and token_class in unpriced:
                return f"no price for {token_class} tokens of {event.model_code} at {_when(event)}"
    return None


def unpriced_classes(cascade: Any) -> frozenset[str]:
    """The token classes that the list or some hop has no price for (computed once per cascade)."""
    return frozenset(
        c
        for c in TOKEN_CLASSES
        if cascade.list_prices.get(c) is None or any(hop.prices.get(c) is None for hop in cascade.hops)
    )


def _when(event: ParsedEvent) -> str:
    return event.occurred_at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Line:
    payee_book_id: int
    payee_account_id: int | None
    model_code: str
    currency: str
    price_list_id: int | None
    tokens: int = 0
    amount: Decimal = Decimal(0)


@dataclass(slots=True)
class _Upstream:
    model_code: str
    currency: str
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    list_charge: Decimal = Decimal(0)


def usage_rate(
    *,
    events: list[ParsedEvent],
    cascades: dict[tuple[int, str, datetime], Any],
    payers: dict[int, Payer],
    received_at: datetime,
    batch_key: str,
    books: dict[int, Book],
    providers: dict[int, Any],
    models: dict[int, Any],
) -> RatingOutcome:
    """Rate the batch's new events into the rollups, draw the upstream cost and the prepaid
    wallets. Runs inside the ingestion transaction: a failure leaves no trace. `books`, `providers`
    and `models` (by id) hold every book, provider and model of the cascades."""
    outcome = RatingOutcome()
    if not events:
        return outcome
    zones = book_zones(books)

    # 1. Sum tokens per (cascade, local day in each book's zone) so prices multiply once per group.
    zone_list = sorted(set(zones.values()), key=str)
    zone_index = {tz: i for i, tz in enumerate(zone_list)}
    groups: dict[tuple[tuple[int, str, datetime], tuple[date, ...]], list[int]] = {}
    if len(zone_list) == 1:
        # One zone for every book of the tree (own books take the root's zone): the cascade key's
        # day start is already the event's day, so events group by cascade key alone, with no
        # per-event time zone conversion.
        groups = {(key, (key[2].date(),)): sums for key, sums in _tokens_by_cascade(events).items()}
    else:
        for event in events:
            assert event.cascade_key is not None
            days = tuple(event.occurred_at.astimezone(tz).date() for tz in zone_list)
            counts = groups.get((event.cascade_key, days))
            if counts is None:
                groups[(event.cascade_key, days)] = list(event.tokens)
            else:
                for i, tokens in enumerate(event.tokens):
                    counts[i] += tokens

    # 2. Price every hop of every group.
    lines: dict[tuple[int, int, date, str, Decimal, bool], _Line] = {}
    upstream: dict[tuple[int, int, int, date], _Upstream] = {}
    drawdowns: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for (key, days), counts in groups.items():
        cascade = cascades[key]
        for hop in cascade.hops:
            payer = payers[hop.payer_id]
            day = days[zone_index[zones[hop.payee_book_id]]]
            prepaid = hop.terms == "prepaid"
            outcome.touched_account_ids.add(hop.payer_id)
            for token_class, tokens in zip(TOKEN_CLASSES, counts, strict=True):
                if not tokens:
                    continue
                unit_price = hop.prices[token_class]
                amount = tokens * unit_price / MILLION
                line_key = (hop.payer_id, cascade.model_id, day, token_class, unit_price, prepaid)
                line = lines.get(line_key)
                if line is None:
                    line = lines[line_key] = _Line(
                        payee_book_id=hop.payee_book_id,
                        payee_account_id=hop.payee_account_id,
                        model_code=key[1],
                        currency=payer.currency,
                        price_list_id=hop.price_list_id,
                    )
                line.tokens += tokens
                line.amount += amount
                if prepaid:
                    drawdowns[(hop.payee_book_id, hop.payer_id)] += amount
        root_day = days[zone_index[zones[cascade.root_book_id]]]
        up_key = (cascade.root_book_id, cascade.provider_id, cascade.model_id, root_day)
        up = upstream.get(up_key)
        if up is None:
            up = upstream[up_key] = _Upstream(
                model_code=key[1], currency=providers[cascade.provider_id].currency
            )
        for i, (token_class, tokens) in enumerate(zip(TOKEN_CLASSES, counts, strict=True)):
            if tokens:
                up.tokens[i] += tokens
                up.list_charge += tokens * cascade.list_prices[token_class] / MILLION

    outcome.rollup_rows = _rollups_upsert(lines)
    outcome.upstream_rows = _upstream_draw_and_upsert(
        upstream, books, providers, models, received_at, batch_key
    )
    outcome.drawdowns = _drawdowns_post(drawdowns, payers, books, received_at, batch_key)
    return outcome


def _tokens_by_cascade(events: list[ParsedEvent]) -> dict[CascadeKey, list[int]]:
    """The events' tokens per class, summed per cascade key (this loop runs once per event)."""
    by_key: dict[CascadeKey, list[int]] = {}
    for event in events:
        assert event.cascade_key is not None
        sums = by_key.get(event.cascade_key)
        t = event.tokens
        if sums is None:
            by_key[event.cascade_key] = [t[0], t[1], t[2], t[3]]
        else:
            sums[0] += t[0]
            sums[1] += t[1]
            sums[2] += t[2]
            sums[3] += t[3]
    return by_key


# The accrual rows of a batch's postpaid lines (see _rollups_upsert): as they are, or summed.
_ACCRUALS = """
    SELECT p, date_trunc('month', d::timestamp)::date, m, mc, tc, up, cur, d, t, a, 1, now()
    FROM lines WHERE NOT pp
    ORDER BY n
"""
_ACCRUALS_GROUPED = """
    SELECT p, date_trunc('month', d::timestamp)::date, m, min(mc), tc, up, min(cur), min(d),
           sum(t), sum(a), 1, now()
    FROM lines WHERE NOT pp
    GROUP BY p, m, 2, tc, up ORDER BY p, m, 2, tc, up
"""


def _rollups_upsert(lines: dict[tuple[int, int, date, str, Decimal, bool], _Line]) -> int:
    if not lines:
        return 0
    # Sorted by the unique key: concurrent batches take the rollup row locks in one order.
    ordered = sorted(lines.items(), key=lambda item: item[0])
    # An upsert may touch a row once, so two lines of one accrual (two days of one month, same
    # model, class and price) are summed first, in SQL. Only a batch with two days of one month can
    # have such lines; any other batch's lines map to distinct accruals, in (payer, model, month,
    # class, price) order, the order the grouped statement locks them in too.
    days = {key[2] for key in lines}
    grouped = len(days) != len({day.replace(day=1) for day in days})
    # Rows, then columns by zip (in C): ~3x cheaper than appending each value to its column.
    rows = [
        (
            payer_id,
            line.payee_book_id,
            line.payee_account_id,
            model_id,
            line.model_code,
            day,
            token_class,
            unit_price,
            line.currency,
            prepaid,
            line.price_list_id,
            line.tokens,
            line.amount,
        )
        for (payer_id, model_id, day, token_class, unit_price, prepaid), line in ordered
    ]
    columns = list(zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH lines AS (
                SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[],
                                     %s::date[], %s::text[], %s::numeric[], %s::text[], %s::boolean[],
                                     %s::bigint[], %s::bigint[], %s::numeric[])
                              WITH ORDINALITY AS t(p, b, pa, m, mc, d, tc, up, cur, pp, pl, t, a, n)
            ), rolled AS (
                INSERT INTO settlement_usagerollup
                    (payer_account_id, payee_book_id, payee_account_id, model_id, model_code, day,
                     token_class, unit_price, currency, prepaid, price_list_id, tokens, amount, updated_at)
                SELECT p, b, pa, m, mc, d, tc, up, cur, pp, pl, t, a, now() FROM lines
                ORDER BY n
                ON CONFLICT (payer_account_id, model_id, day, token_class, unit_price, prepaid) DO UPDATE
                   SET tokens = settlement_usagerollup.tokens + EXCLUDED.tokens,
                       amount = settlement_usagerollup.amount + EXCLUDED.amount,
                       updated_at = now()
            )
            -- The payer's postpaid month per model, class and price, in the same statement (and so
            -- the same commit) as its daily rows: the close reads these instead of the days.
            INSERT INTO settlement_usageaccrual
                (payer_account_id, month, model_id, model_code, token_class, unit_price, currency,
                 first_day, tokens, amount, revision, updated_at)
            {_ACCRUALS_GROUPED if grouped else _ACCRUALS}
            ON CONFLICT (payer_account_id, month, model_id, token_class, unit_price) DO UPDATE
               SET tokens = settlement_usageaccrual.tokens + EXCLUDED.tokens,
                   amount = settlement_usageaccrual.amount + EXCLUDED.amount,
                   first_day = LEAST(settlement_usageaccrual.first_day, EXCLUDED.first_day),
                   revision = settlement_usageaccrual.revision + 1,
                   updated_at = now()
            """,
            [array_literal(column) for column in columns],
        )
    return len(ordered)


def _upstream_draw_and_upsert(
    upstream: dict[tuple[int, int, int, date], _Upstream],
    books: dict[int, Book],
    providers: dict[int, Any],
    models: dict[int, Any],
    received_at: datetime,
    batch_key: str,
) -> int:
    if not upstream:
        return 0
    from procurement.services import UpstreamCostRequest, upstream_cost_draw_many

    ordered = sorted(upstream.items(), key=lambda item: item[0])
    costs: dict[tuple[int, int, int, date], tuple[Decimal, Decimal]] = {}
    for book_id in sorted({key[0] for key, _ in ordered}):
        keys = [key for key, up in ordered if key[0] == book_id and up.list_charge > 0]
        # One draw per provider, model and day of the batch, all in one call per root book; the key
        # names the batch, so a retried call of the same batch draws nothing twice.
        drawn = upstream_cost_draw_many(
            book=books[book_id],
            requests=[
                UpstreamCostRequest(
                    provider=providers[provider_id],
                    list_charge=upstream[key].list_charge,
                    currency=upstream[key].currency,
                    at=received_at,
                    idempotency_key=f"usage:{batch_key}:{model_id}:{day.isoformat()}",
                    model=models[model_id],
                )
                for key in keys
                for (_, provider_id, model_id, day) in [key]
            ],
        )
        for key, result in zip(keys, drawn, strict=True):
            costs[key] = (result.cost, result.accrued_list)
    rows = [
        (
            book_id,
            provider_id,
            model_id,
            up.model_code,
            day,
            up.currency,
            *up.tokens,
            up.list_charge,
            *costs.get((book_id, provider_id, model_id, day), (Decimal(0), Decimal(0))),
        )
        for (book_id, provider_id, model_id, day), up in ordered
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO settlement_upstreamcostrollup
                (book_id, provider_id, model_id, model_code, day, currency, input_tokens,
                 cached_input_tokens, cache_write_tokens, output_tokens, list_charge, cost, accrued_list,
                 updated_at)
            SELECT b, p, m, mc, d, cur, i, ci, cw, o, lc, c, al, now()
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::date[], %s::text[],
                        %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::numeric[],
                        %s::numeric[]) WITH ORDINALITY AS t(b, p, m, mc, d, cur, i, ci, cw, o, lc, c, al, n)
            ORDER BY n
            ON CONFLICT (book_id, provider_id, model_id, day) DO UPDATE
               SET input_tokens = settlement_upstreamcostrollup.input_tokens + EXCLUDED.input_tokens,
                   cached_input_tokens = settlement_upstreamcostrollup.cached_input_tokens
                                         + EXCLUDED.cached_input_tokens,
                   cache_write_tokens = settlement_upstreamcostrollup.cache_write_tokens
                                        + EXCLUDED.cache_write_tokens,
                   output_tokens = settlement_upstreamcostrollup.output_tokens + EXCLUDED.output_tokens,
                   list_charge = settlement_upstreamcostrollup.list_charge + EXCLUDED.list_charge,
                   cost = settlement_upstreamcostrollup.cost + EXCLUDED.cost,
                   accrued_list = settlement_upstreamcostrollup.accrued_list + EXCLUDED.accrued_list,
                   updated_at = now()
            """,
            [list(column) for column in zip(*rows, strict=True)],
        )
    return len(ordered)


def _wallets_lock(book_id: int, payers: list[Payer]) -> dict[int, Decimal]:
    """Lock and read the wallets (customer deposits per counterparty) of these payers in one book.
    Locked in counterparty order, the order the ledger's balance upsert uses, so a concurrent
    batch for the same wallet waits instead of drawing the same money twice."""
    by_counterparty = {f"account:{p.code}": p for p in payers}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT b.counterparty, b.currency, b.credits - b.debits
            FROM ledger_accountbalance b
            JOIN ledger_ledgeraccount la ON la.id = b.ledger_account_id
            WHERE la.book_id = %s AND la.code = 'customer_deposits' AND b.counterparty = ANY(%s)
            ORDER BY b.counterparty, b.currency
            FOR UPDATE OF b
            """,
            [book_id, sorted(by_counterparty)],
        )
        wallets: dict[int, Decimal] = {}
        for counterparty, currency, balance in cursor.fetchall():
            payer = by_counterparty[counterparty]
            if currency == payer.currency:
                wallets[payer.id] = balance
    return wallets


def _drawdowns_post(
    drawdowns: dict[tuple[int, int], Decimal],
    payers: dict[int, Payer],
    books: dict[int, Book],
    received_at: datetime,
    batch_key: str,
) -> dict[str, Decimal]:
    """§11.12: debit the wallet up to its balance, debit receivables for any shortfall, credit
    revenue; the wallet never goes below zero."""
    posted: dict[str, Decimal] = {}
    by_book: dict[int, list[tuple[Payer, Decimal]]] = defaultdict(list)
    for (book_id, payer_id), amount in drawdowns.items():
        if amount > 0:
            by_book[book_id].append((payers[payer_id], amount))
    for book_id in sorted(by_book):
        items = sorted(by_book[book_id], key=lambda item: item[0].code)
        wallets = _wallets_lock(book_id, [payer for payer, _ in items])
        drafts: list[EntryDraft] = []
        for payer, amount in items:
            wallet = max(wallets.get(payer.id, Decimal(0)), Decimal(0))
            from_wallet = min(wallet, amount)
            shortfall = amount - from_wallet
            counterparty = f"account:{payer.code}"
            legs = [credit("revenue", amount, payer.currency, counterparty)]
            if from_wallet > 0:
                legs.append(debit("customer_deposits", from_wallet, payer.currency, counterparty))
            if shortfall > 0:
                legs.append(debit("receivables", shortfall, payer.currency, counterparty))
            drafts.append(
                EntryDraft(
                    idempotency_key=f"usage-drawdown:{batch_key}:{payer.code}",
                    occurred_at=received_at,
                    legs=legs,
                    description=f"Usage drawdown of {payer.code}",
                    source_type=DRAWDOWN_SOURCE,
                    source_id=batch_key,
                )
            )
            posted[payer.code] = amount
        entries_post_ids(book=books[book_id], drafts=drafts)
    return posted
