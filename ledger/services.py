"""The only writer of the books. Every money movement in the project posts through
`entries_post_ids` (or `entries_post`, which reads the entries back, or its one-entry form
`entry_post`); nothing else inserts entries or postings.

Posting is idempotent per (book, idempotency key): the same key with the same content returns the
first entry; the same key with different content is refused. Balance rows are locked in one order
(ledger account, counterparty, currency) so parallel posters never deadlock.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction

from distributor.errors import Conflict, ValidationFailed
from distributor.money import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    EXACT_QUANTUM,
    MONEY_CONTEXT,
    check_currency,
    normalize,
    to_decimal,
)
from distributor.sql import rows_insert
from ledger.models import (
    CHART_OF_ACCOUNTS,
    RATE_DECIMAL_PLACES,
    RATE_MAX_DIGITS,
    Book,
    ExchangeRate,
    JournalEntry,
    LedgerAccount,
    Side,
)


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of an entry before it is posted: `account` is a chart code such as "receivables"."""

    account: str
    side: str
    amount: Decimal
    currency: str
    counterparty: str = ""


def debit(account: str, amount: Decimal, currency: str, counterparty: str = "") -> Leg:
    return Leg(account=account, side=Side.DEBIT, amount=amount, currency=currency, counterparty=counterparty)


def credit(account: str, amount: Decimal, currency: str, counterparty: str = "") -> Leg:
    return Leg(account=account, side=Side.CREDIT, amount=amount, currency=currency, counterparty=counterparty)


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry to post: what happened, when, and its legs."""

    idempotency_key: str
    occurred_at: datetime
    legs: Sequence[Leg]
    description: str = ""
    source_type: str = ""
    source_id: str = ""
    reverses_id: int | None = field(default=None)


def book_create(*, code: str, name: str, currency: str, timezone: str = "UTC", grace_days: int = 0) -> Book:
    """A new book with its full chart of accounts (§8)."""
    import zoneinfo

    check_currency(currency)
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(f"unknown time zone {timezone!r}", details={"timezone": timezone}) from exc
    if not code or len(code) > 64:
        raise ValidationFailed("book code must be 1 to 64 characters", details={"code": code})
    with transaction.atomic():
        if Book.objects.filter(code=code).exists():
            raise Conflict(f"book {code!r} already exists", details={"code": code})
        book = Book.objects.create(
            code=code, name=name, currency=currency, timezone=timezone, grace_days=grace_days
        )
        LedgerAccount.objects.bulk_create(
            LedgerAccount(book=book, code=c, name=n, type=t, normal_side=s)
            for c, n, t, s in CHART_OF_ACCOUNTS
        )
    return book


def _content_hash(draft: EntryDraft) -> str:
    legs = sorted(
        (leg.account, str(leg.side), normalize(leg.amount), leg.currency, leg.counterparty)
        for leg in draft.legs
    )
    # The instant, not its zone: the same moment given in Asia/Shanghai or in UTC (as it comes back
    # from the database) is the same entry.
    at = draft.occurred_at.astimezone(UTC).isoformat()
    payload = {"at": at, "legs": legs, "reverses": draft.reverses_id}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


_EXACT_EXPONENT = -AMOUNT_DECIMAL_PLACES
# NUMERIC(38, 18) holds amounts below 10^20; a larger one would fail in PostgreSQL, not here.
_AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)
_COUNTERPARTY_MAX_LENGTH = 100


def _validate(draft: EntryDraft, chart: dict[str, int]) -> None:
    where = {"idempotency_key": draft.idempotency_key}
    if not draft.idempotency_key or len(draft.idempotency_key) > 200:
        raise ValidationFailed("an entry needs an idempotency key of 1 to 200 characters", details=where)
    if draft.occurred_at.tzinfo is None:
        raise ValidationFailed("occurred_at must carry a time zone", details=where)
    if len(draft.legs) < 2:
        raise ValidationFailed("an entry needs at least two legs", details=where)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for leg in draft.legs:
        if leg.account not in chart:
            raise ValidationFailed(f"no ledger account {leg.account!r} in this book", details=where)
        if leg.side not in (Side.DEBIT, Side.CREDIT):
            raise ValidationFailed(f"side must be debit or credit, not {leg.side!r}", details=where)
        if not isinstance(leg.amount, Decimal) or not leg.amount.is_finite() or leg.amount <= 0:
            raise ValidationFailed(
                f"leg amounts must be positive decimals, got {leg.amount!r}", details=where
            )
        if leg.amount >= _AMOUNT_LIMIT:
            raise ValidationFailed(
                f"amount {leg.amount} is too large for the books (limit 10^20)", details=where
            )
        # Judged by value: 0.05000000000000000000 (a product of two 10-place figures) is exact at 18
        # places even though it is written with 20.
        if leg.amount.as_tuple().exponent < _EXACT_EXPONENT and leg.amount != leg.amount.quantize(  # type: ignore[operator]
            EXACT_QUANTUM, context=MONEY_CONTEXT
        ):
            raise ValidationFailed(
                f"amount {leg.amount} has more than {AMOUNT_DECIMAL_PLACES} decimal places", details=where
            )
        if not isinstance(leg.counterparty, str) or len(leg.counterparty) > _COUNTERPARTY_MAX_LENGTH:
            raise ValidationFailed(
                f"counterparty must be a string of at most {_COUNTERPARTY_MAX_LENGTH} characters",
                details=where,
            )
        check_currency(leg.currency)
        totals[leg.currency] += leg.amount if leg.side == Side.DEBIT else -leg.amount
    unbalanced = {cur: str(diff) for cur, diff in totals.items() if diff != 0}
    if unbalanced:
        raise ValidationFailed("entry does not balance", details={**where, "difference": unbalanced})


def _chart(book: Book) -> dict[str, int]:
    return dict(LedgerAccount.objects.filter(book=book).values_list("code", "id"))


def entry_post(
    *,
    book: Book,
    idempotency_key: str,
    occurred_at: datetime,
    legs: Sequence[Leg],
    description: str = "",
    source_type: str = "",
    source_id: str = "",
) -> JournalEntry:
    """Post one balanced entry (or return the one already posted under this key)."""
    draft = EntryDraft(
        idempotency_key=idempotency_key,
        occurred_at=occurred_at,
        legs=legs,
        description=description,
        source_type=source_type,
        source_id=source_id,
    )
    return entries_post(book=book, drafts=[draft])[0]


def entries_post(*, book: Book, drafts: Sequence[EntryDraft]) -> list[JournalEntry]:
    """Post many entries in one transaction, set-based; returns them in the order given."""
    with transaction.atomic():
        ids = entries_post_ids(book=book, drafts=drafts)
        entries = JournalEntry.objects.in_bulk(set(ids))
    return [entries[pk] for pk in ids]


def entries_post_ids(*, book: Book, drafts: Sequence[EntryDraft]) -> list[int]:
    """`entries_post` for a caller that needs only the entries' ids (in the order given): it reads
    no entry back. Usage batches post three entries each and keep nothing of them but an id."""
    if not drafts:
        return []
    chart = _chart(book)
    by_key: dict[str, tuple[EntryDraft, str]] = {}
    for draft in drafts:
        _validate(draft, chart)
        digest = _content_hash(draft)
        seen = by_key.get(draft.idempotency_key)
        if seen is not None and seen[1] != digest:
            raise Conflict(
                "the same idempotency key appears twice with different content",
                details={"idempotency_key": draft.idempotency_key},
            )
        by_key[draft.idempotency_key] = (draft, digest)
    unique = list(by_key.values())
    keys = [d.idempotency_key for d, _ in unique]

    with transaction.atomic():
        try:
            ids = _insert_entries(book, unique)
        except IntegrityError as exc:
            # The only other unique rule on entries: an entry is reversed at most once.
            raise Conflict("that entry has already been reversed", details={"keys": keys[:10]}) from exc
        new = [(ids[d.idempotency_key], d) for d, _ in unique if d.idempotency_key in ids]
        existing_keys = [k for k in keys if k not in ids]
        if existing_keys:
            ids.update(_check_existing(book, existing_keys, by_key))
        if new:
            _insert_postings_and_balances(chart, new)
    return [ids[d.idempotency_key] for d in drafts]


def _insert_entries(book: Book, unique: list[tuple[EntryDraft, str]]) -> dict[str, int]:
    # Keys are claimed in key order: two batches sharing keys in different orders would otherwise
    # each wait on the other's uncommitted key (a deadlock); sorted, the later one simply queues.
    unique = sorted(unique, key=lambda pair: pair[0].idempotency_key)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO ledger_journalentry
                (book_id, idempotency_key, content_hash, occurred_at, posted_at,
                 description, source_type, source_id, reverses_id)
            SELECT %s, k, h, o, now(), d, st, si, r
            FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                        %s::bigint[]) WITH ORDINALITY AS t(k, h, o, d, st, si, r, n)
            ORDER BY n
            ON CONFLICT (book_id, idempotency_key) DO NOTHING
            RETURNING idempotency_key, id
            """,
            [
                book.pk,
                [d.idempotency_key for d, _ in unique],
                [h for _, h in unique],
                [d.occurred_at for d, _ in unique],
                [d.description[:500] for d, _ in unique],
                [d.source_type for d, _ in unique],
                [d.source_id for d, _ in unique],
                [d.reverses_id for d, _ in unique],
            ],
        )
        return dict(cur.fetchall())


def _check_existing(book: Book, keys: list[str], by_key: dict[str, tuple[EntryDraft, str]]) -> dict[str, int]:
    """The ids of the entries already posted under these keys, each checked to hold the same
    content as its draft."""
    stored = {
        key: (pk, content_hash)
        for key, pk, content_hash in JournalEntry.objects.filter(
            book=book, idempotency_key__in=keys
        ).values_list("idempotency_key", "pk", "content_hash")
    }
    for key in keys:
        found = stored.get(key)
        if found is None or found[1] != by_key[key][1]:
            raise Conflict(
                "an entry with this idempotency key was already posted with different content",
                details={"idempotency_key": key},
            )
    return {key: pk for key, (pk, _) in stored.items()}


def _insert_postings_and_balances(chart: dict[str, int], new: list[tuple[int, EntryDraft]]) -> None:
    entry_ids: list[int] = []
    account_ids: list[int] = []
    counterparties: list[str] = []
    sides: list[str] = []
    amounts: list[Decimal] = []
    currencies: list[str] = []
    deltas: dict[tuple[int, str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for entry_id, draft in new:
        for leg in draft.legs:
            account_id = chart[leg.account]
            entry_ids.append(entry_id)
            account_ids.append(account_id)
            counterparties.append(leg.counterparty)
            sides.append(str(leg.side))
            amounts.append(leg.amount)
            currencies.append(leg.currency)
            delta = deltas[(account_id, leg.counterparty, leg.currency)]
            delta[0 if leg.side == Side.DEBIT else 1] += leg.amount
    ordered = sorted(deltas.items())
    with connection.cursor() as cur:
        rows_insert(
            table="ledger_posting",
            columns=(
                ("entry_id", "bigint"),
                ("ledger_account_id", "bigint"),
                ("counterparty", "text"),
                ("side", "text"),
                ("amount", "numeric"),
                ("currency", "text"),
            ),
            values=[entry_ids, account_ids, counterparties, sides, amounts, currencies],
        )
        # Rows are upserted in (account, counterparty, currency) order: every poster takes these
        # row locks in the same order, so concurrent posters queue instead of deadlocking.
        cur.execute(
            """
            INSERT INTO ledger_accountbalance (ledger_account_id, counterparty, currency, debits, credits)
            SELECT a, c, cur, d, cr
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::numeric[], %s::numeric[])
                 WITH ORDINALITY AS t(a, c, cur, d, cr, n)
            ORDER BY n
            ON CONFLICT (ledger_account_id, counterparty, currency) DO UPDATE
               SET debits = ledger_accountbalance.debits + EXCLUDED.debits,
                   credits = ledger_accountbalance.credits + EXCLUDED.credits
            """,
            [
                [k[0] for k, _ in ordered],
                [k[1] for k, _ in ordered],
                [k[2] for k, _ in ordered],
                [v[0] for _, v in ordered],
                [v[1] for _, v in ordered],
            ],
        )


def entry_reverse(
    *, entry: JournalEntry, occurred_at: datetime, idempotency_key: str | None = None, description: str = ""
) -> JournalEntry:
    """Post the mirror of `entry` (every leg on the other side), linked to it. An entry is
    reversed at most once; reversing again under the same key returns the first reversal."""
    legs = [
        Leg(
            account=p.ledger_account.code,
            side=Side.CREDIT if p.side == Side.DEBIT else Side.DEBIT,
            amount=p.amount,
            currency=p.currency,
            counterparty=p.counterparty,
        )
        for p in entry.postings.select_related("ledger_account").order_by("id")
    ]
    key = idempotency_key or f"reversal:{entry.idempotency_key}"
    draft = EntryDraft(
        idempotency_key=key,
        occurred_at=occurred_at,
        legs=legs,
        description=description or f"Reversal of {entry.description or entry.idempotency_key}"[:500],
        source_type=entry.source_type,
        source_id=entry.source_id,
        reverses_id=entry.pk,
    )
    return entries_post(book=entry.book, drafts=[draft])[0]


def exchange_rate_set(*, base: str, quote: str, rate: Decimal, effective_at: datetime) -> ExchangeRate:
    """Record that from `effective_at` one `base` is worth `rate` `quote` (§2). Append-only: the
    same pair, time and rate again returns the stored row; a different rate at that time is a
    Conflict (enter a correction with a later `effective_at`)."""
    check_currency(base)
    check_currency(quote)
    details = {"base": base, "quote": quote}
    if base == quote:
        raise ValidationFailed("an exchange rate needs two different currencies", details=details)
    value = to_decimal(rate, field="rate")
    if value <= 0:
        raise ValidationFailed(f"rate must be positive, got {value}", details=details)
    if value >= Decimal(10) ** (RATE_MAX_DIGITS - RATE_DECIMAL_PLACES) or value != value.quantize(
        Decimal(1).scaleb(-RATE_DECIMAL_PLACES), context=MONEY_CONTEXT
    ):
        raise ValidationFailed(
            f"rate {value} must have at most {RATE_DECIMAL_PLACES} decimal places and stay below 10^14",
            details=details,
        )
    if effective_at.tzinfo is None:
        raise ValidationFailed("effective_at must carry a time zone", details=details)
    with transaction.atomic():
        with connection.cursor() as cur:
            # ON CONFLICT DO NOTHING rather than get_or_create: two importers entering the same
            # rate at once both succeed instead of one failing on the unique index.
            cur.execute(
                """
                INSERT INTO ledger_exchangerate (base, quote, rate, effective_at, created_at)
                VALUES (%s, %s, %s, %s, now())
                ON CONFLICT (base, quote, effective_at) DO NOTHING
                """,
                [base, quote, value, effective_at],
            )
        stored = ExchangeRate.objects.get(base=base, quote=quote, effective_at=effective_at)
    if stored.rate != value:
        raise Conflict(
            f"a different {base}/{quote} rate ({stored.rate}) is already in force from "
            f"{effective_at.isoformat()}; enter a correction with a later effective time",
            details={**details, "stored_rate": str(stored.rate), "rate": str(value)},
        )
    return stored
