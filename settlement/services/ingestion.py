"""Usage ingestion (§5): validate a batch, land its new events exactly once, rate them, and refresh
the credit cache of every account it touched.

Exactly-once: the key table is UNIQUE (account, request_id). A batch of new events is
COPYed straight into the event table and its keys inserted from the rows just landed; if any key
exists, that attempt is rolled back to its savepoint and the batch goes through a staging table,
where
`INSERT INTO settlement_usagekey ... ON CONFLICT DO NOTHING` learns which are new. The key index
serialises concurrent replays of one batch, so every event is counted once however many connections
send it. Only new events reach the event table, the rollups, the upstream draw and the wallets; a
replayed batch changes nothing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.db import connection, transaction
from psycopg import errors as psycopg_errors
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from distributor.errors import ValidationFailed
from settlement.models import UsageBatch
from settlement.services import rating
from settlement.services.credit_control import credit_states_refresh
from settlement.services.partitions import usage_partitions_ensure
from settlement.services.validation import ParsedEvent, Rejection, events_parse, same_content

MAX_BATCH_EVENTS = 10_000
# pg_advisory_xact_lock class of the ingestion slots (settings.USAGE_INGEST_CONCURRENCY); the
# object id is the slot's number.
INGEST_SLOT_LOCK_CLASS: Final = 0x5E57
_SLOT_POLLING_SECONDS: Final = 30.0


@dataclass(slots=True)
class IngestResult:
    """The answer to the gateway: counts, and each rejection with its index and reason."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    batch_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejections": self.rejections,
        }


def _in_scope(account: rating.Payer, caller: Any | None, service: bool) -> bool:
    if service:
        # A service key is the root's: it may post for any account of the tree.
        return True
    if caller is None:
        return False
    return account.id == caller.pk or caller.pk in account.ancestor_ids


def payers_load(
    *, codes: Sequence[str] = (), ids: Sequence[int] = (), memo: rating.RatingMemo
) -> dict[int, rating.Payer]:
    """The accounts with these codes or ids, and all their ancestors (the payers of their cascades):
    the ones `memo` remembers, the others in at most two queries. Unknown codes are not remembered
    (the account may be opened later)."""
    from django.db.models import Q

    from accounts.models import Account

    fields = ("id", "code", "currency", "book_id", "ancestor_ids")
    known, ids_by_code = memo.payers, memo.payer_ids_by_code
    found: dict[int, rating.Payer] = {}

    def remembered(pks: Iterable[int]) -> set[int]:
        """Put the remembered ones of `pks` in `found`; the others are returned, to be read."""
        unknown: set[int] = set()
        for pk in pks:
            payer = known.get(pk)
            if payer is None:
                unknown.add(pk)
            else:
                found[pk] = payer
        return unknown

    def add(rows: Any) -> None:
        for pk, code, currency, book_id, ancestor_ids in rows:
            payer = rating.Payer(
                id=pk, code=code, currency=currency, book_id=book_id, ancestor_ids=tuple(ancestor_ids or ())
            )
            # The payer before its code: a batch in another thread that finds the code finds it.
            found[pk] = known[pk] = payer
            ids_by_code[code] = pk

    wanted_codes = {code for code in codes if code not in ids_by_code}
    wanted_ids = remembered({ids_by_code[code] for code in set(codes) - wanted_codes} | set(ids))
    if wanted_codes or wanted_ids:
        add(Account.objects.filter(Q(code__in=wanted_codes) | Q(pk__in=wanted_ids)).values_list(*fields))
    missing = remembered({a for p in list(found.values()) for a in p.ancestor_ids} - set(found))
    if missing:
        add(Account.objects.filter(pk__in=missing).values_list(*fields))
    return found


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A batch allocates a few hundred thousand short-lived objects (parsed events, tuples, rows),
    which trigger several full collections that walk every object of the process: up to 40% of a
    batch's time in one measurement (docs/benchmarks.md). They hold no reference cycles and are
    freed by reference counting, so the cyclic collector is paused for the batch and resumes after.
    The switch is per process: in a threaded worker, requests served alongside a batch run with the
    collector paused too, for at most that batch's duration (nothing is lost, collection is late)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def usage_ingest(
    *,
    events: list[Any],
    caller_account: Any | None = None,
    service: bool = False,
    received_at: datetime,
) -> IngestResult:
    """Ingest one batch. `caller_account` is the account whose own key sent it (events default to
    it and must lie in its subtree); `service=True` is the root's service key (any account, and
    every event must name one). Invalid events are rejected one by one; valid ones always land."""
    with _cyclic_gc_paused():
        return _ingest(events=events, caller_account=caller_account, service=service, received_at=received_at)


def _ingest(
    *,
    events: list[Any],
    caller_account: Any | None,
    service: bool,
    received_at: datetime,
) -> IngestResult:
    if received_at.tzinfo is None:
        raise ValidationFailed("received_at must carry a time zone")
    if len(events) > MAX_BATCH_EVENTS:
        raise ValidationFailed(
            f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}",
            details={"max_events": MAX_BATCH_EVENTS, "events": len(events)},
        )
    result = IngestResult()
    default_account = caller_account.code if caller_account is not None else None

    parsed, rejections = events_parse(events, default_account=default_account, received_at=received_at)

    memo = rating.rating_memo()
    payers = payers_load(codes=[e.account_code for e in parsed], memo=memo) if parsed else {}
    by_code = {p.code: p for p in payers.values()}
    # Decided once per account, not per event: the accounts this caller may report for.
    allowed = {code: p for code, p in by_code.items() if _in_scope(p, caller_account, service)}
    models = _models_by_code({e.model_code for e in parsed})
    model_ids = {code: model.pk for code, model in models.items()}

    # Resolve accounts and models, drop in-batch repeats (same key twice in one batch), and name
    # each event's (account, model, day start): its cascade of prices.
    books = rating.books_load({p.book_id for p in allowed.values()})
    zones = rating.book_zones(books)
    account_zones = {p.id: zones[p.book_id] for p in allowed.values()}
    day_start = rating.DayStarts()
    resolved: list[ParsedEvent] = []
    seen: dict[tuple[int, str], ParsedEvent] = {}
    in_batch_duplicates = 0
    for event in parsed:
        payer = allowed.get(event.account_code)
        if payer is None:
            if event.account_code in by_code:
                code, reason = "out_of_scope", f"account {event.account_code!r} is outside the caller's scope"
            else:
                code, reason = "unknown_account", f"unknown account {event.account_code!r}"
            rejections.append(Rejection(event.index, event.request_id, code, reason))
            continue
        model_id = model_ids.get(event.model_code)
        if model_id is None:
            rejections.append(
                Rejection(
                    event.index, event.request_id, "unknown_model", f"unknown model {event.model_code!r}"
                )
            )
            continue
        event.account_id = payer.id
        event.model_id = model_id
        key = (payer.id, event.request_id)
        earlier = seen.get(key)
        if earlier is not None:
            if same_content(earlier, event):
                in_batch_duplicates += 1
            else:
                rejections.append(_conflict(event))
            continue
        seen[key] = event
        event.cascade_key = (
            payer.id,
            event.model_code,
            day_start(event.occurred_at, account_zones[payer.id]),
        )
        resolved.append(event)

    # Price every (account, model, day) once; an event with an unpriced class is refused.
    cascades = rating.cascades_load((e.cascade_key for e in resolved if e.cascade_key is not None), memo=memo)
    blocked = rating.unpriced_positions(cascades, memo=memo)
    priced: list[ParsedEvent] = []
    for event in resolved:
        cascade_key = event.cascade_key
        assert cascade_key is not None
        positions = blocked.get(cascade_key)
        if positions is not None:
            tokens = event.tokens
            for i in positions:
                if tokens[i]:
                    break
            else:
                priced.append(event)
                continue
        problem = rating.price_problem(event, cascades.get(cascade_key))
        assert problem is not None
        rejections.append(Rejection(event.index, event.request_id, "no_price", problem))

    # Partitions are created (if missing) before the merge transaction: see partitions.py. A day of
    # the book's zone spans at most two UTC months, and an extra partition ahead does no harm.
    usage_partitions_ensure(
        months={month for day in {key[2] for key in blocked} for month in _utc_months_of_day(day)}
    )

    touched: set[int] = set()
    # A caller's own transaction may hold locks a slot holder waits for: only a batch that is its
    # own transaction (the API's) waits for a slot.
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction:
            _ingest_slot_take()
        batch = UsageBatch.objects.create(
            received_at=received_at, caller_account_id=caller_account.pk if caller_account else None
        )
        new, duplicates, conflicts = _land(batch.pk, priced, received_at)
        rejections.extend(conflicts)
        if new:
            payers.update(
                payers_load(ids=[hop.payer_id for c in cascades.values() if c for hop in c.hops], memo=memo)
            )
            books.update(
                rating.books_load(
                    (
                        {hop.payee_book_id for c in cascades.values() if c for hop in c.hops}
                        | {c.root_book_id for c in cascades.values() if c}
                    )
                    - books.keys()
                )
            )
            rated = rating.usage_rate(
                events=new,
                cascades=cascades,
                payers=payers,
                received_at=received_at,
                batch_key=str(batch.pk),
                books=books,
                providers=_providers({c.provider_id for c in cascades.values() if c}),
                models={model.pk: model for model in models.values()},
            )
            touched = rated.touched_account_ids
        rejections.sort(key=lambda r: r.index)
        result.accepted = len(new)
        result.duplicates = duplicates + in_batch_duplicates
        result.rejected = len(rejections)
        result.rejections = [r.as_dict() for r in rejections]
        result.batch_id = batch.pk
        batch.accepted, batch.duplicates, batch.rejected = result.accepted, result.duplicates, result.rejected
        batch.save(update_fields=["accepted", "duplicates", "rejected"])

    # The gateway's next authorize must see this batch: refresh before the caller answers (§6).
    if touched:
        credit_states_refresh(account_ids=touched | {a for t in touched for a in payers[t].ancestor_ids})
    return result


def _ingest_slot_take() -> None:
    """Take one of settings.USAGE_INGEST_CONCURRENCY slots for the rest of the transaction, or wait
    for one. Every batch updates the same rollup rows, and beyond about the database's cores more
    batches in flight add no throughput: they queue on each other's row locks, retry their upserts,
    and keep old row versions from being pruned, so updates leave their page and write every index.
    With four batches in flight PostgreSQL spent ~265 ms of CPU a batch, with two ~185 (docs/
    benchmarks.md). The slots are transaction-scoped advisory locks, released at commit or rollback
    and with a connection that dies.

    A waiting batch polls instead of blocking in pg_advisory_xact_lock: a statement blocked in it
    holds a snapshot, and a snapshot held anywhere stops the pruning that the slots are there to
    allow. After _SLOT_POLLING_SECONDS it blocks after all (where PostgreSQL's deadlock detector sees
    it)."""
    slots = settings.USAGE_INGEST_CONCURRENCY
    if not slots:
        return
    pause = 0.001
    deadline = time.monotonic() + _SLOT_POLLING_SECONDS
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT s FROM generate_series(0, %s) s WHERE pg_try_advisory_xact_lock(%s, s) LIMIT 1",
                [slots - 1, INGEST_SLOT_LOCK_CLASS],
            )
            if cursor.fetchone() is not None:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.016)
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [INGEST_SLOT_LOCK_CLASS, 0])


def _utc_months_of_day(start: datetime) -> tuple[date, date]:
    """The first days of the UTC months that the local day beginning at `start` touches."""
    first = start.astimezone(UTC)
    last = (start + timedelta(days=1) - timedelta(microseconds=1)).astimezone(UTC)
    return date(first.year, first.month, 1), date(last.year, last.month, 1)


def _conflict(event: ParsedEvent) -> Rejection:
    return Rejection(
        event.index,
        event.request_id,
        "conflict",
        f"request_id {event.request_id!r} was already used with different content",
    )


def _models_by_code(codes: set[str]) -> dict[str, Any]:
    if not codes:
        return {}
    from procurement.models import ProviderModel

    return {model.code: model for model in ProviderModel.objects.filter(code__in=codes)}


def _providers(ids: set[int]) -> dict[int, Any]:
    from procurement.models import Provider

    return Provider.objects.in_bulk(ids)


_EVENT_COLUMN_NAMES = (
    *("account_id", "request_id", "model_id", "model_code", "input_tokens", "cached_input_tokens"),
    *("cache_write_tokens", "output_tokens", "occurred_at", "received_at", "batch_id", "tags"),
)
_EVENT_COLUMNS = ", ".join(_EVENT_COLUMN_NAMES)
# Binary COPY needs each column's type, in order.
_EVENT_TYPES = [
    *("int8", "varchar", "int8", "varchar", "int8", "int8", "int8", "int8"),
    *("timestamptz", "timestamptz", "int8", "jsonb"),
]
_EVENT_COPY = f"COPY settlement_usageevent ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_KEYS_OF_BATCH = """
INSERT INTO settlement_usagekey (account_id, request_id, occurred_at, batch_id)
SELECT account_id, request_id, occurred_at, batch_id FROM settlement_usageevent
WHERE batch_id = %s AND occurred_at BETWEEN %s AND %s
ORDER BY account_id, request_id
"""
# The event table's columns, then the event's index in the batch.
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS settlement_usage_staging (
    account_id bigint NOT NULL,
    request_id varchar(200) COLLATE "C" NOT NULL,
    model_id bigint NOT NULL,
    model_code varchar(100) NOT NULL,
    input_tokens bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    batch_id bigint NOT NULL,
    tags jsonb NULL,
    idx integer NOT NULL
) ON COMMIT DELETE ROWS
"""
_STAGING_COPY = "COPY settlement_usage_staging FROM STDIN (FORMAT BINARY)"
_STAGING_TYPES = [*_EVENT_TYPES, "int4"]


def _event_rows(events: list[ParsedEvent], received_at: datetime, batch_id: int) -> Iterator[tuple[Any, ...]]:
    """The events as the event table's rows, in _EVENT_COLUMNS order."""
    for e in events:
        t = e.tokens
        yield (
            e.account_id,
            e.request_id,
            e.model_id,
            e.model_code,
            t[0],
            t[1],
            t[2],
            t[3],
            e.occurred_at,
            received_at,
            batch_id,
            e.tags_json,
        )


class _RawJsonb:
    """Nothing is ever one of these: registering _JsonbFromText under this type on a cursor makes it
    that cursor's binary dumper for the jsonb oid, which is what COPY's set_types picks."""


class _JsonbFromText(Dumper):
    """Binary jsonb from JSON text: the format's version byte, then the text as it is. psycopg's own
    jsonb dumper would encode the text again, as a JSON string."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


def _land(
    batch_id: int, events: list[ParsedEvent], received_at: datetime
) -> tuple[list[ParsedEvent], int, list[Rejection]]:
    """Claim the events' keys and append the new ones to the event table. Returns (new events,
    duplicates of earlier batches, conflicts).

    A batch of new events (the common case) is COPYed straight into the event table, the raw
    ceiling's own path, and its keys are inserted from those rows. If any key exists already (a
    replay, or a concurrent batch sharing keys that committed first) the key table's unique index
    refuses them; the attempt is rolled back to its savepoint and the batch goes the careful way,
    through a staging table and `ON CONFLICT DO NOTHING`."""
    if not events:
        return [], 0, []
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_dumper(_RawJsonb, _JsonbFromText)
        if not _some_landed_before(cursor, events) and _land_new(
            cursor.cursor, batch_id, events, received_at
        ):
            return events, 0, []
        return _land_some(cursor, batch_id, events, received_at)


def _some_landed_before(cursor: Any, events: list[ParsedEvent]) -> bool:
    """Whether the first, middle or last key has landed already: a gateway's retry of a batch sent
    before, which the COPY would only refuse after sending the keys."""
    probes = {(e.account_id, e.request_id) for e in (events[0], events[len(events) // 2], events[-1])}
    pairs = ", ".join(["(%s, %s)"] * len(probes))
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM settlement_usagekey WHERE (account_id, request_id) IN ({pairs}))",
        [v for probe in probes for v in probe],
    )
    return bool(cursor.fetchone()[0])


def _land_new(raw_cursor: Any, batch_id: int, events: list[ParsedEvent], received_at: datetime) -> bool:
    """COPY every event, then claim their keys from the rows just landed (through the event table's
    batch_id index, within the batch's occurred_at bounds: partitions pruned); False (and nothing
    written) if some key exists already. The keys go in (account, request_id) order, the staging
    path's too ("C" collation: code point order), so two batches sharing keys queue on the key
    index instead of deadlocking; PostgreSQL sorts them, which costs less than Python sorting the
    events and sending the keys in a second COPY."""
    try:
        with transaction.atomic():
            with raw_cursor.copy(_EVENT_COPY) as copy:
                copy.set_types(_EVENT_TYPES)
                write_row = copy.write_row
                for row in _event_rows(events, received_at, batch_id):
                    write_row(row)
            raw_cursor.execute(
                _KEYS_OF_BATCH,
                [batch_id, min(e.occurred_at for e in events), max(e.occurred_at for e in events)],
            )
    except (psycopg_errors.UniqueViolation, psycopg_errors.DeadlockDetected):
        return False
    return True


def _land_some(
    cursor: Any, batch_id: int, events: list[ParsedEvent], received_at: datetime
) -> tuple[list[ParsedEvent], int, list[Rejection]]:
    """The events through staging: keys claimed with ON CONFLICT DO NOTHING, claimed ones appended,
    the others compared with the event their key landed (a duplicate, or a conflict)."""
    by_index = {e.index: e for e in events}
    # The staging table lives for the session (no catalog churn per batch) and empties itself at
    # commit; DELETE covers a caller that ingests twice inside one outer transaction (a TRUNCATE
    # here cost a new file and catalog update per batch).
    cursor.execute(_STAGING_DDL)
    cursor.execute("DELETE FROM settlement_usage_staging")
    with cursor.cursor.copy(_STAGING_COPY) as copy:
        copy.set_types(_STAGING_TYPES)
        write_row = copy.write_row
        for e, row in zip(events, _event_rows(events, received_at, batch_id), strict=True):
            write_row((*row, e.index))
    # Only counts come back: sending 10,000 rows to Python and matching them to events cost more
    # than the merge itself.
    cursor.execute(
        f"""
        WITH claimed AS (
            INSERT INTO settlement_usagekey (account_id, request_id, occurred_at, batch_id)
            SELECT account_id, request_id, occurred_at, batch_id
            FROM settlement_usage_staging
            ORDER BY account_id, request_id
            ON CONFLICT (account_id, request_id) DO NOTHING
            RETURNING account_id, request_id
        ), landed AS (
            INSERT INTO settlement_usageevent ({_EVENT_COLUMNS})
            SELECT {", ".join(f"s.{name}" for name in _EVENT_COLUMN_NAMES)}
            FROM claimed c
            JOIN settlement_usage_staging s
              ON s.account_id = c.account_id AND s.request_id = c.request_id
            RETURNING 1
        )
        SELECT count(*) FROM landed
        """
    )
    (landed,) = cursor.fetchone()
    if landed == len(events):
        return events, 0, []
    # Some keys existed before this batch. An event is a duplicate when the event its key landed is
    # just like it (what same_content compares), a conflict when not. That event is found through
    # its key's batch (the event table's one index is on batch_id) within the keys' occurred_at
    # bounds (partitions pruned), so a replay reads the rows of the batches it repeats, never the
    # whole month. The same statement names the events this batch landed (its keys' batch is this
    # one), so each staged key is looked up once.
    cursor.execute(
        """
        WITH staged AS MATERIALIZED (
            -- A subquery per staged event: one probe of the key index each (as a join, the
            -- planner may hash the whole key table, which only ever grows).
            SELECT s.*, (
                SELECT k.batch_id FROM settlement_usagekey k
                WHERE k.account_id = s.account_id AND k.request_id = s.request_id
            ) AS landed_by
            FROM settlement_usage_staging s
        ), earlier AS MATERIALIZED (
            SELECT * FROM staged WHERE landed_by <> %(batch)s
        ), originals AS (
            SELECT * FROM settlement_usageevent
            WHERE batch_id = ANY(ARRAY(SELECT DISTINCT landed_by FROM earlier))
              AND occurred_at BETWEEN (SELECT min(occurred_at) FROM earlier)
                                  AND (SELECT max(occurred_at) FROM earlier)
        )
        SELECT s.idx, false AS new
        FROM earlier s
        LEFT JOIN originals e
          ON e.batch_id = s.landed_by AND e.account_id = s.account_id AND e.request_id = s.request_id
        WHERE e.account_id IS NULL OR NOT (
            e.occurred_at = s.occurred_at AND e.model_code = s.model_code
            AND e.input_tokens = s.input_tokens AND e.cached_input_tokens = s.cached_input_tokens
            AND e.cache_write_tokens = s.cache_write_tokens AND e.output_tokens = s.output_tokens
            AND e.tags IS NOT DISTINCT FROM s.tags
        )
        UNION ALL
        SELECT idx, true FROM staged WHERE landed_by = %(batch)s
        ORDER BY 1
        """,
        {"batch": batch_id},
    )
    conflicts: list[Rejection] = []
    new_events: list[ParsedEvent] = []
    for idx, new in cursor.fetchall():
        if new:
            new_events.append(by_index[idx])
        else:
            conflicts.append(_conflict(by_index[idx]))
    duplicates = len(events) - landed - len(conflicts)
    return new_events, duplicates, conflicts
