"""Writers of the upstream side (§3, §11.5): providers, models and list prices; quota purchases and
their expiry; the upstream cost of usage; payments to providers.

Every money movement posts to the ledger through `ledger.services` and leaves a row here that
explains it (purchase, charge and its draws, breakage, payment). Quota purchases are locked in
primary-key order by every writer that touches their remaining credit, so parallel drawers queue
instead of drawing the same credit twice, and never deadlock.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction

from distributor.errors import Conflict, ValidationFailed
from distributor.money import (
    MONEY_CONTEXT,
    PRICE_DECIMAL_PLACES,
    check_currency,
    quantize_exact,
    round_minor,
    to_decimal,
)
from ledger.models import Book
from ledger.services import EntryDraft, Leg, entries_post, entries_post_ids, entry_post
from ledger.services import credit as credit_leg
from ledger.services import debit as debit_leg
from procurement.models import (
    TOKEN_CLASSES,
    ListPriceVersion,
    Provider,
    ProviderModel,
    QuotaDraw,
    QuotaPurchase,
    UpstreamCharge,
    UpstreamPayment,
    UpstreamStatement,
    UpstreamStatementLine,
)

# ---------------------------------------------------------------------------------------------
# Providers, models, list prices
# ---------------------------------------------------------------------------------------------


def provider_create(*, code: str, name: str, currency: str, low_cover_days: int = 14) -> Provider:
    check_currency(currency)
    if not code or len(code) > 64:
        raise ValidationFailed("provider code must be 1 to 64 characters", details={"code": code})
    if low_cover_days < 0:
        raise ValidationFailed(
            "low_cover_days cannot be negative", details={"low_cover_days": low_cover_days}
        )
    with transaction.atomic():
        if Provider.objects.filter(code=code).exists():
            raise Conflict(f"provider {code!r} already exists", details={"code": code})
        return Provider.objects.create(code=code, name=name, currency=currency, low_cover_days=low_cover_days)


def provider_update(*, provider: Provider, name: str, low_cover_days: int) -> Provider:
    """Rename a provider or change its cover alert. Its code and currency never change: ledger
    counterparties and purchases are keyed by them."""
    if low_cover_days < 0:
        raise ValidationFailed(
            "low_cover_days cannot be negative", details={"low_cover_days": low_cover_days}
        )
    with transaction.atomic():
        Provider.objects.filter(pk=provider.pk).update(name=name, low_cover_days=low_cover_days)
        provider.name, provider.low_cover_days = name, low_cover_days
    return provider


def provider_model_create(*, provider: Provider, code: str, name: str = "") -> ProviderModel:
    if not code or len(code) > 100:
        raise ValidationFailed("model code must be 1 to 100 characters", details={"code": code})
    with transaction.atomic():
        if ProviderModel.objects.filter(code=code).exists():
            raise Conflict(
                f"model {code!r} already exists (model codes are unique across providers)",
                details={"code": code},
            )
        return ProviderModel.objects.create(provider=provider, code=code, name=name)


def list_price_set(
    *,
    model: ProviderModel,
    effective_from: datetime,
    prices: dict[str, Decimal],
    now: datetime | None = None,
) -> ListPriceVersion:
    """Add a list-price version. Append-only (§3): a version must start after the model's latest
    one, so the price of any moment already covered never changes. With `now` (the admin passes
    it), a new version for a model that already has prices may not start in the past either.
    Setting the same version again with the same prices is a no-op; with other prices, a Conflict.
    """
    if effective_from.tzinfo is None:
        raise ValidationFailed("effective_from must carry a time zone", details={"model": model.code})
    unknown = sorted(set(prices) - set(TOKEN_CLASSES))
    if unknown:
        raise ValidationFailed(
            f"unknown token class(es) {', '.join(unknown)}",
            details={"unknown": unknown, "known": list(TOKEN_CLASSES)},
        )
    parsed: dict[str, Decimal | None] = dict.fromkeys(TOKEN_CLASSES)
    for cls, value in prices.items():
        price = to_decimal(value, field=cls)
        if price < 0:
            raise ValidationFailed(f"{cls} price cannot be negative", details={cls: str(price)})
        if price.as_tuple().exponent < -PRICE_DECIMAL_PLACES:  # type: ignore[operator]
            raise ValidationFailed(
                f"{cls} price has more than {PRICE_DECIMAL_PLACES} decimal places", details={cls: str(price)}
            )
        parsed[cls] = price
    with transaction.atomic():
        # The model row is the lock that serializes version appends for one model.
        ProviderModel.objects.select_for_update().get(pk=model.pk)
        same = ListPriceVersion.objects.filter(model=model, effective_from=effective_from).first()
        if same is not None:
            if same.prices() == parsed:
                return same
            raise Conflict(
                "a list-price version already starts at that time with other prices; add a new version",
                details={"model": model.code, "effective_from": effective_from.isoformat()},
            )
        latest = ListPriceVersion.objects.filter(model=model).order_by("-effective_from").first()
        if latest is not None and effective_from < latest.effective_from:
            raise ValidationFailed(
                "list prices are append-only: a new version must start after the latest one",
                details={"model": model.code, "latest": latest.effective_from.isoformat()},
            )
        if latest is not None and now is not None and effective_from < now:
            raise ValidationFailed(
                "a price change cannot start in the past: usage already rated would be rewritten",
                details={"model": model.code, "effective_from": effective_from.isoformat()},
            )
        return ListPriceVersion.objects.create(model=model, effective_from=effective_from, **parsed)


# ---------------------------------------------------------------------------------------------
# Quota purchases
# ---------------------------------------------------------------------------------------------


def expiry_instant(*, book: Book, expires_on: date) -> datetime:
    """Credit is usable through the whole of `expires_on` in the book's zone: it lapses at the
    start of the next day there (Asia/Shanghai, 2026-12-31 -> 2026-12-31T16:00Z)."""
    zone = zoneinfo.ZoneInfo(book.timezone)
    return datetime.combine(expires_on + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def _same_currency(provider: Provider, currency: str) -> None:
    check_currency(currency)
    if currency != provider.currency:
        raise ValidationFailed(
            f"provider {provider.code} deals in {provider.currency}, not {currency}",
            details={"provider": provider.code, "currency": currency, "expected": provider.currency},
        )


def quota_purchase_record(
    *,
    book: Book,
    provider: Provider,
    paid: Decimal,
    credit: Decimal,
    currency: str,
    purchased_at: datetime,
    expires_on: date | None = None,
    promotional: bool = False,
    reference: str = "",
) -> QuotaPurchase:
    """Record a prepayment to a provider and post it: debit upstream_prepayments / credit cash at
    `paid`. Promotional credit costs nothing, so it posts nothing (its draws cost 0).
    A non-empty `reference` makes the call idempotent: the same purchase again returns the first
    one; different figures under the same reference are a Conflict."""
    paid = to_decimal(paid, field="paid")
    credit_granted = to_decimal(credit, field="credit")
    _same_currency(provider, currency)
    where = {"provider": provider.code, "reference": reference}
    if purchased_at.tzinfo is None:
        raise ValidationFailed("purchased_at must carry a time zone", details=where)
    if credit_granted <= 0:
        raise ValidationFailed("credit must be positive", details={**where, "credit": str(credit_granted)})
    if promotional and paid != 0:
        raise ValidationFailed(
            "promotional credit is free: paid must be 0", details={**where, "paid": str(paid)}
        )
    if not promotional and paid <= 0:
        raise ValidationFailed(
            "a paid purchase needs a positive amount paid (record free credit as promotional)",
            details={**where, "paid": str(paid)},
        )
    if paid != round_minor(paid, currency):
        raise ValidationFailed(
            "paid is cash: it must be in the currency's minor unit", details={**where, "paid": str(paid)}
        )
    expires_at = expiry_instant(book=book, expires_on=expires_on) if expires_on is not None else None
    if expires_at is not None and expires_at <= purchased_at:
        raise ValidationFailed(
            "the credit would expire before it was bought", details={**where, "expires_on": str(expires_on)}
        )

    with transaction.atomic():
        if reference:
            existing = QuotaPurchase.objects.filter(book=book, reference=reference).first()
            if existing is not None:
                return _purchase_replay(
                    existing, provider, paid, credit_granted, currency, purchased_at, expires_on, promotional
                )
        try:
            with transaction.atomic():
                purchase = QuotaPurchase.objects.create(
                    book=book,
                    provider=provider,
                    paid=paid,
                    credit=credit_granted,
                    currency=currency,
                    purchased_at=purchased_at,
                    expires_on=expires_on,
                    expires_at=expires_at,
                    promotional=promotional,
                    reference=reference,
                    remaining_credit=credit_granted,
                )
        except IntegrityError:
            # A parallel caller recorded the same reference first.
            existing = QuotaPurchase.objects.get(book=book, reference=reference)
            return _purchase_replay(
                existing, provider, paid, credit_granted, currency, purchased_at, expires_on, promotional
            )
        if paid > 0:
            purchase.purchase_entry = entry_post(
                book=book,
                idempotency_key=f"quota_purchase:{purchase.pk}",
                occurred_at=purchased_at,
                legs=[
                    debit_leg("upstream_prepayments", paid, currency, counterparty=provider.counterparty),
                    credit_leg("cash", paid, currency, counterparty=provider.counterparty),
                ],
                description=f"Quota purchase from {provider.name or provider.code}"
                + (f" ({reference})" if reference else ""),
                source_type="quota_purchase",
                source_id=str(purchase.pk),
            )
            purchase.save(update_fields=["purchase_entry"])
    return purchase


def _purchase_replay(
    existing: QuotaPurchase,
    provider: Provider,
    paid: Decimal,
    credit_granted: Decimal,
    currency: str,
    purchased_at: datetime,
    expires_on: date | None,
    promotional: bool,
) -> QuotaPurchase:
    same = (
        existing.provider_id == provider.pk
        and existing.paid == paid
        and existing.credit == credit_granted
        and existing.currency == currency
        and existing.purchased_at == purchased_at
        and existing.expires_on == expires_on
        and existing.promotional == promotional
    )
    if not same:
        raise Conflict(
            "a purchase with this reference was already recorded with other terms",
            details={"reference": existing.reference, "purchase": existing.pk},
        )
    return existing


def _cost_of_drawn(purchase: QuotaPurchase, drawn_list: Decimal) -> Decimal:
    """Cost of the first `drawn_list` of a purchase's credit: drawn x paid/credit, exact where the
    division terminates and fitted to 18 places where it does not. Draw costs are differences of
    this cumulative figure, so a purchase drawn to the end has cost exactly `paid`, and the
    prepayment left at cost (paid - cost of drawn) always equals the ledger to the last place."""
    if drawn_list == purchase.credit:
        return purchase.paid
    return quantize_exact(
        MONEY_CONTEXT.divide(MONEY_CONTEXT.multiply(drawn_list, purchase.paid), purchase.credit)
    )


def prepaid_cost_left(purchase: QuotaPurchase) -> Decimal:
    """What a purchase's remaining credit cost (the upstream_prepayments it still carries)."""
    return purchase.paid - _cost_of_drawn(purchase, purchase.credit - purchase.remaining_credit)


# ---------------------------------------------------------------------------------------------
# Upstream cost of usage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Draw:
    """The part of a charge taken from one purchase."""

    purchase_id: int
    list_amount: Decimal
    cost_amount: Decimal


@dataclass(frozen=True, slots=True)
class UpstreamCost:
    """What a list-price charge cost the book: `drawn_list` came from prepaid credit at
    `drawn_cost`; `accrued_list` found no credit and accrued as `accrued_payable` (at list).
    cost = drawn_cost + accrued_payable. `replayed` is True when the key had already been drawn."""

    cost: Decimal
    drawn_list: Decimal
    accrued_payable: Decimal
    draws: tuple[Draw, ...]
    drawn_cost: Decimal = Decimal(0)
    accrued_list: Decimal = Decimal(0)
    list_charge: Decimal = Decimal(0)
    charge_id: int | None = None
    entry_id: int | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamCostRequest:
    """One charge of a batch for `upstream_cost_draw_many`."""

    provider: Provider
    list_charge: Decimal
    currency: str
    at: datetime
    idempotency_key: str
    model: ProviderModel | None = None


@dataclass
class _Pending:
    request: UpstreamCostRequest
    charge_id: int
    draws: list[tuple[QuotaPurchase, Decimal, Decimal]] = field(default_factory=list)
    accrued_list: Decimal = Decimal(0)


def upstream_cost_draw(
    *,
    book: Book,
    provider: Provider,
    list_charge: Decimal,
    currency: str,
    at: datetime,
    idempotency_key: str,
    model: ProviderModel | None = None,
) -> UpstreamCost:
    """Turn a list-price charge into upstream cost (§3, §11.5): draw it FIFO from the provider's
    purchases in this book that exist and have not expired at `at` (earliest expiry first, no
    expiry last, then purchase time), each part at its purchase's paid/credit rate; what no credit
    covers accrues as a payable to the provider at list. Posts one entry: debit cost_of_sales /
    credit upstream_prepayments (drawn, at cost) and upstream_payables (accrued). A replay of the
    key returns the first result without drawing again."""
    request = UpstreamCostRequest(
        provider=provider,
        list_charge=list_charge,
        currency=currency,
        at=at,
        idempotency_key=idempotency_key,
        model=model,
    )
    return upstream_cost_draw_many(book=book, requests=[request])[0]


def upstream_cost_draw_many(*, book: Book, requests: Sequence[UpstreamCostRequest]) -> list[UpstreamCost]:
    """The batch form of `upstream_cost_draw`, in one transaction: requests are drawn in the order
    given, and the new ones post one ledger entry per provider. Results come back in request order;
    a key already drawn (earlier, or earlier in the same list with the same content) is a replay."""
    if not requests:
        return []
    unique: dict[str, UpstreamCostRequest] = {}
    for req in requests:
        _request_check(req)
        seen = unique.get(req.idempotency_key)
        if seen is not None and _request_signature(seen) != _request_signature(req):
            raise Conflict(
                "the same idempotency key appears twice with different content",
                details={"idempotency_key": req.idempotency_key},
            )
        unique[req.idempotency_key] = req

    with transaction.atomic():
        claimed = _charges_claim(book, list(unique.values()))
        pending = [
            _Pending(request=req, charge_id=claimed[key]) for key, req in unique.items() if key in claimed
        ]
        if pending:
            _draw(book, pending)
        results = _results(book, unique)
    # Keys drawn before this call (not claimed now) are replays.
    return [
        _replace_replayed(results[req.idempotency_key], req.idempotency_key not in claimed)
        for req in requests
    ]


def _replace_replayed(result: UpstreamCost, replayed: bool) -> UpstreamCost:
    if result.replayed == replayed:
        return result
    return UpstreamCost(
        cost=result.cost,
        drawn_list=result.drawn_list,
        accrued_payable=result.accrued_payable,
        draws=result.draws,
        drawn_cost=result.drawn_cost,
        accrued_list=result.accrued_list,
        list_charge=result.list_charge,
        charge_id=result.charge_id,
        entry_id=result.entry_id,
        replayed=replayed,
    )


def _request_check(req: UpstreamCostRequest) -> None:
    where = {"idempotency_key": req.idempotency_key, "provider": req.provider.code}
    if not req.idempotency_key or len(req.idempotency_key) > 200:
        raise ValidationFailed(
            "an upstream charge needs an idempotency key of 1 to 200 characters", details=where
        )
    if req.at.tzinfo is None:
        raise ValidationFailed("at must carry a time zone", details=where)
    charge = to_decimal(req.list_charge, field="list_charge")
    if charge < 0:
        raise ValidationFailed(
            "a list charge cannot be negative", details={**where, "list_charge": str(charge)}
        )
    if req.model is not None and req.model.provider_id != req.provider.pk:
        raise ValidationFailed(f"model {req.model.code} is not sold by {req.provider.code}", details=where)
    _same_currency(req.provider, req.currency)


def _request_signature(req: UpstreamCostRequest) -> tuple[object, ...]:
    return (
        req.provider.pk,
        to_decimal(req.list_charge, field="list_charge"),
        req.currency,
        req.at,
        req.model.pk if req.model is not None else None,
    )


def _charges_claim(book: Book, requests: list[UpstreamCostRequest]) -> dict[str, int]:
    """Insert a charge row per key, ON CONFLICT DO NOTHING: the unique key is the claim. A caller
    racing on the same key waits for the first to commit and then finds the key taken (a replay).
    Keys go in sorted order so two batches sharing keys wait for each other in one order."""
    ordered = sorted(requests, key=lambda r: r.idempotency_key)
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO procurement_upstreamcharge
                (book_id, provider_id, model_id, idempotency_key, at, currency, list_charge, drawn_list,
                 drawn_cost, accrued_list, accrued_payable, cost, created_at)
            SELECT %s, p, m, k, a, c, l, 0, 0, 0, 0, 0, now()
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::numeric[])
                 WITH ORDINALITY AS t(p, m, k, a, c, l, n)
            ORDER BY n
            ON CONFLICT (book_id, idempotency_key) DO NOTHING
            RETURNING idempotency_key, id
            """,
            [
                book.pk,
                [r.provider.pk for r in ordered],
                [r.model.pk if r.model is not None else None for r in ordered],
                [r.idempotency_key for r in ordered],
                [r.at for r in ordered],
                [r.currency for r in ordered],
                [to_decimal(r.list_charge, field="list_charge") for r in ordered],
            ],
        )
        claimed = dict(cur.fetchall())
    taken = [r for r in requests if r.idempotency_key not in claimed]
    if taken:
        stored = {
            c.idempotency_key: c
            for c in UpstreamCharge.objects.filter(
                book=book, idempotency_key__in=[r.idempotency_key for r in taken]
            )
        }
        for req in taken:
            charge = stored[req.idempotency_key]
            if (
                charge.provider_id,
                charge.list_charge,
                charge.currency,
                charge.at,
                charge.model_id,
            ) != _request_signature(req):
                raise Conflict(
                    "this upstream charge key was already drawn with different content",
                    details={"idempotency_key": req.idempotency_key, "charge": charge.pk},
                )
    return claimed


def _purchases_lock(book: Book, provider_ids: list[int]) -> dict[int, list[QuotaPurchase]]:
    """Lock every purchase of these providers in this book that still has credit, in pk order,
    and return them per provider in FIFO order (earliest expiry, no expiry last, then purchase time)."""
    rows = list(
        QuotaPurchase.objects.filter(book=book, provider_id__in=provider_ids, remaining_credit__gt=0)
        .order_by("pk")
        .select_for_update()
    )
    rows.sort(key=lambda p: (p.expires_at is None, p.expires_at or p.purchased_at, p.purchased_at, p.pk))
    by_provider: dict[int, list[QuotaPurchase]] = defaultdict(list)
    for row in rows:
        by_provider[row.provider_id].append(row)
    return by_provider


def _draw(book: Book, pending: list[_Pending]) -> None:
    purchases = _purchases_lock(book, sorted({p.request.provider.pk for p in pending}))
    touched: dict[int, QuotaPurchase] = {}
    for item in pending:
        req = item.request
        left = to_decimal(req.list_charge, field="list_charge")
        for purchase in purchases.get(req.provider.pk, []):
            if left == 0:
                break
            usable = (
                purchase.remaining_credit > 0
                and purchase.currency == req.currency
                and purchase.purchased_at <= req.at
                and (purchase.expires_at is None or req.at < purchase.expires_at)
            )
            if not usable:
                continue
            take = min(left, purchase.remaining_credit)
            drawn_before = purchase.credit - purchase.remaining_credit
            cost = _cost_of_drawn(purchase, drawn_before + take) - _cost_of_drawn(purchase, drawn_before)
            purchase.remaining_credit -= take
            touched[purchase.pk] = purchase
            item.draws.append((purchase, take, cost))
            left -= take
        item.accrued_list = left

    if touched:
        # Plain UPDATEs from arrays: bulk_update's CASE expressions were ~a fifth of a usage batch's
        # upstream draw in Python (docs/benchmarks.md).
        ordered_purchases = sorted(touched.values(), key=lambda p: p.pk)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE procurement_quotapurchase p SET remaining_credit = t.remaining
                FROM unnest(%s::bigint[], %s::numeric[]) AS t(id, remaining) WHERE p.id = t.id
                """,
                [[p.pk for p in ordered_purchases], [p.remaining_credit for p in ordered_purchases]],
            )
    QuotaDraw.objects.bulk_create(
        QuotaDraw(charge_id=item.charge_id, purchase=purchase, list_amount=take, cost_amount=cost)
        for item in pending
        for purchase, take, cost in item.draws
    )

    by_provider: dict[int, list[_Pending]] = defaultdict(list)
    for item in pending:
        by_provider[item.request.provider.pk].append(item)
    drafts: list[EntryDraft] = []
    entry_charges: list[list[_Pending]] = []
    for _, items in sorted(by_provider.items()):
        draft = _cost_entry(items)
        if draft is not None:
            drafts.append(draft)
            entry_charges.append(items)
    entry_ids = entries_post_ids(book=book, drafts=drafts)

    entry_of = {
        item.charge_id: entry_id
        for entry_id, items in zip(entry_ids, entry_charges, strict=True)
        for item in items
    }
    rows: list[tuple[object, ...]] = []
    for item in sorted(pending, key=lambda p: p.charge_id):
        drawn_list = sum((take for _, take, _ in item.draws), Decimal(0))
        drawn_cost = sum((cost for _, _, cost in item.draws), Decimal(0))
        accrued_payable = _overage_cost(item.accrued_list)
        cost = drawn_cost + accrued_payable
        rows.append(
            (
                item.charge_id,
                drawn_list,
                drawn_cost,
                item.accrued_list,
                accrued_payable,
                cost,
                entry_of.get(item.charge_id),
            )
        )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE procurement_upstreamcharge c
               SET drawn_list = t.drawn_list, drawn_cost = t.drawn_cost, accrued_list = t.accrued_list,
                   accrued_payable = t.accrued_payable, cost = t.cost, entry_id = t.entry_id
            FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[],
                        %s::numeric[], %s::bigint[])
                 AS t(id, drawn_list, drawn_cost, accrued_list, accrued_payable, cost, entry_id)
            WHERE c.id = t.id
            """,
            [list(column) for column in zip(*rows, strict=True)],
        )


def _overage_cost(accrued_list: Decimal) -> Decimal:
    # §3: without prepaid credit, usage is owed to the provider at list price.
    return accrued_list


def _cost_entry(items: list[_Pending]) -> EntryDraft | None:
    provider = items[0].request.provider
    currency = items[0].request.currency
    drawn_cost = sum((cost for item in items for _, _, cost in item.draws), Decimal(0))
    accrued = sum((_overage_cost(item.accrued_list) for item in items), Decimal(0))
    total = drawn_cost + accrued
    if total == 0:
        # Nothing to post: a zero charge, or promotional credit that cost nothing.
        return None
    legs: list[Leg] = [debit_leg("cost_of_sales", total, currency, counterparty=provider.counterparty)]
    if drawn_cost > 0:
        legs.append(
            credit_leg("upstream_prepayments", drawn_cost, currency, counterparty=provider.counterparty)
        )
    if accrued > 0:
        legs.append(credit_leg("upstream_payables", accrued, currency, counterparty=provider.counterparty))
    keys = sorted(item.request.idempotency_key for item in items)
    if len(keys) == 1 and len(keys[0]) <= 180:
        key = f"upstream_cost:{keys[0]}"
    else:
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
        key = f"upstream_cost:{provider.code}:{digest}"
    return EntryDraft(
        idempotency_key=key,
        occurred_at=max(item.request.at for item in items),
        legs=legs,
        description=f"Upstream cost, {provider.name or provider.code}"
        + (f": {len(items)} charges" if len(items) > 1 else ""),
        source_type="upstream_charge",
        source_id=",".join(str(item.charge_id) for item in items)[:200],
    )


_RESULT_FIELDS = (
    *("pk", "idempotency_key", "cost", "drawn_list", "accrued_payable", "drawn_cost", "accrued_list"),
    *("list_charge", "entry_id"),
)


def _results(book: Book, unique: dict[str, UpstreamCostRequest]) -> dict[str, UpstreamCost]:
    charges = list(
        UpstreamCharge.objects.filter(book=book, idempotency_key__in=list(unique)).values_list(
            *_RESULT_FIELDS
        )
    )
    draws: dict[int, list[Draw]] = defaultdict(list)
    for charge_id, purchase_id, list_amount, cost_amount in (
        QuotaDraw.objects.filter(charge_id__in=[c[0] for c in charges])
        .order_by("pk")
        .values_list("charge_id", "purchase_id", "list_amount", "cost_amount")
    ):
        draws[charge_id].append(Draw(purchase_id, list_amount, cost_amount))
    return {
        key: UpstreamCost(
            cost=cost,
            drawn_list=drawn_list,
            accrued_payable=accrued_payable,
            draws=tuple(draws[pk]),
            drawn_cost=drawn_cost,
            accrued_list=accrued_list,
            list_charge=list_charge,
            charge_id=pk,
            entry_id=entry_id,
        )
        for pk, key, cost, drawn_list, accrued_payable, drawn_cost, accrued_list, list_charge, entry_id in (
            charges
        )
    }


# ---------------------------------------------------------------------------------------------
# Expiry (breakage)
# ---------------------------------------------------------------------------------------------


def purchases_expire(*, book: Book, now: datetime) -> list[QuotaPurchase]:
    """Book the expiry of every purchase in the book that lapsed by `now` (§3, §11.5): its unused
    credit at cost leaves upstream_prepayments; the loss goes to breakage_loss in the minor unit and
    the residue below it to cost_of_sales. Each purchase expires once: a rerun finds nothing to do.
    Returns the purchases expired by this call (those with no credit left are marked too)."""
    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone", details={"book": book.code})
    with transaction.atomic():
        due = list(
            QuotaPurchase.objects.filter(book=book, expires_at__lte=now, expired_at__isnull=True)
            .select_related("provider")
            .order_by("pk")
            .select_for_update(of=("self",))
        )
        drafts: list[EntryDraft] = []
        with_entry: list[QuotaPurchase] = []
        for purchase in due:
            left_at_cost = prepaid_cost_left(purchase)
            purchase.breakage_list = purchase.remaining_credit
            purchase.breakage_amount = round_minor(left_at_cost, purchase.currency)
            purchase.remaining_credit = Decimal(0)
            purchase.expired_at = now
            if left_at_cost > 0:
                drafts.append(_breakage_entry(purchase, left_at_cost))
                with_entry.append(purchase)
        for purchase, entry in zip(with_entry, entries_post(book=book, drafts=drafts), strict=True):
            purchase.breakage_entry = entry
        QuotaPurchase.objects.bulk_update(
            due, ["breakage_list", "breakage_amount", "remaining_credit", "expired_at", "breakage_entry"]
        )
    return due


def _breakage_entry(purchase: QuotaPurchase, left_at_cost: Decimal) -> EntryDraft:
    currency, cp = purchase.currency, purchase.provider.counterparty
    loss = round_minor(left_at_cost, currency)
    residue = loss - left_at_cost  # > 0: the loss was rounded up, so cost of sales gives it back
    legs: list[Leg] = [credit_leg("upstream_prepayments", left_at_cost, currency, counterparty=cp)]
    if loss > 0:
        legs.append(debit_leg("breakage_loss", loss, currency, counterparty=cp))
    if residue > 0:
        legs.append(credit_leg("cost_of_sales", residue, currency, counterparty=cp))
    elif residue < 0:
        legs.append(debit_leg("cost_of_sales", -residue, currency, counterparty=cp))
    assert purchase.expires_at is not None
    return EntryDraft(
        idempotency_key=f"breakage:{purchase.pk}",
        occurred_at=purchase.expires_at,
        legs=legs,
        description=f"Breakage: {purchase.provider.code} credit expired {purchase.expires_on}",
        source_type="quota_purchase",
        source_id=str(purchase.pk),
    )


# ---------------------------------------------------------------------------------------------
# Payments to providers
# ---------------------------------------------------------------------------------------------


def upstream_payment_record(
    *,
    book: Book,
    provider: Provider,
    amount: Decimal,
    currency: str,
    paid_at: datetime,
    reference: str,
) -> UpstreamPayment:
    """Pay a provider what the book owes it: debit upstream_payables / credit cash. The reference
    (the bank's) is unique per book: the same payment again is a no-op, other figures a Conflict."""
    amount = to_decimal(amount, field="amount")
    _same_currency(provider, currency)
    where = {"provider": provider.code, "reference": reference}
    if not reference or len(reference) > 200:
        raise ValidationFailed("a payment needs a reference of 1 to 200 characters", details=where)
    if paid_at.tzinfo is None:
        raise ValidationFailed("paid_at must carry a time zone", details=where)
    if amount <= 0 or amount != round_minor(amount, currency):
        raise ValidationFailed(
            "a payment is a positive amount in the currency's minor unit",
            details={**where, "amount": str(amount)},
        )
    with transaction.atomic():
        existing = UpstreamPayment.objects.filter(book=book, reference=reference).first()
        if existing is None:
            try:
                with transaction.atomic():
                    payment = UpstreamPayment.objects.create(
                        book=book,
                        provider=provider,
                        amount=amount,
                        currency=currency,
                        paid_at=paid_at,
                        reference=reference,
                    )
            except IntegrityError:
                existing = UpstreamPayment.objects.get(book=book, reference=reference)
        if existing is not None:
            same = (existing.provider_id, existing.amount, existing.currency, existing.paid_at) == (
                provider.pk,
                amount,
                currency,
                paid_at,
            )
            if not same:
                raise Conflict(
                    "a payment with this reference was already recorded with other figures",
                    details={**where, "payment": existing.pk, "amount": str(existing.amount)},
                )
            return existing
        payment.entry = entry_post(
            book=book,
            idempotency_key=f"upstream_payment:{payment.pk}",
            occurred_at=paid_at,
            legs=[
                debit_leg("upstream_payables", amount, currency, counterparty=provider.counterparty),
                credit_leg("cash", amount, currency, counterparty=provider.counterparty),
            ],
            description=f"Payment to {provider.name or provider.code} ({reference})",
            source_type="upstream_payment",
            source_id=str(payment.pk),
        )
        payment.save(update_fields=["entry"])
    return payment


__all__ = [
    "Draw",
    "UpstreamCost",
    "UpstreamCostRequest",
    "expiry_instant",
    "list_price_set",
    "prepaid_cost_left",
    "provider_create",
    "provider_model_create",
    "provider_update",
    "purchases_expire",
    "quota_purchase_record",
    "upstream_cost_draw",
    "upstream_cost_draw_many",
    "upstream_payment_record",
]


# ---------------------------------------------------------------------------------------------
# Upstream reconciliation (§3): a provider's usage statement against our own metering
# ---------------------------------------------------------------------------------------------

STATEMENT_REQUIRED_COLUMNS: tuple[str, ...] = ("day", "model", "amount")
STATEMENT_MAX_LINES = 100_000


def upstream_statement_import(
    *, book: Book, provider: Provider, csv_text: str, reference: str, imported_at: datetime
) -> UpstreamStatement:
    """Import a provider's usage statement: CSV with a header `day,model,amount` and any of the
    token classes (`input,cached_input,cache_write,output`; a missing class counts 0), one row per
    day and model of this provider. The whole file is checked first and refused with the line and
    column of the first fault, writing nothing. The reference is unique per book and provider: the
    same file again returns the first import; other content under it is a Conflict."""
    import csv
    import io

    where: dict[str, object] = {"provider": provider.code, "reference": reference}
    if not reference or len(reference) > 200:
        raise ValidationFailed("a statement needs a reference of 1 to 200 characters", details=where)
    if imported_at.tzinfo is None:
        raise ValidationFailed("imported_at must carry a time zone", details=where)
    text = csv_text.lstrip("\ufeff").strip()
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in STATEMENT_REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in (*STATEMENT_REQUIRED_COLUMNS, *TOKEN_CLASSES)]
    if missing or unknown:
        raise ValidationFailed(
            "the statement's header must name day, model, amount and any of " + ", ".join(TOKEN_CLASSES),
            details={**where, "missing": missing, "unknown": unknown},
        )
    reader.fieldnames = header
    models_of_provider = set(provider.models.values_list("code", flat=True))
    lines: dict[tuple[date, str], UpstreamStatementLine] = {}
    for number, row in enumerate(reader, start=2):
        at = {**where, "line": number}
        if len(lines) >= STATEMENT_MAX_LINES:
            raise ValidationFailed(f"a statement holds at most {STATEMENT_MAX_LINES} lines", details=at)
        if None in row or any(v is None for v in row.values()):
            raise ValidationFailed(f"line {number} does not have one value per column", details=at)
        try:
            day = date.fromisoformat(row["day"].strip())
        except ValueError:
            raise ValidationFailed(f"line {number}: day must be a date like 2026-10-15", details=at) from None
        model = row["model"].strip()
        if model not in models_of_provider:
            raise ValidationFailed(
                f"line {number}: {model!r} is not a model of {provider.code}", details={**at, "model": model}
            )
        tokens: dict[str, int] = {}
        for token_class in TOKEN_CLASSES:
            raw = (row.get(token_class) or "0").strip() or "0"
            if not raw.isdigit() or len(raw) > 15:
                raise ValidationFailed(
                    f"line {number}: {token_class} must be a whole number of tokens, got {raw!r}",
                    details={**at, "column": token_class},
                )
            tokens[token_class] = int(raw)
        amount = to_decimal(row["amount"].strip(), field=f"line {number} amount")
        if amount < 0 or quantize_exact(amount) != amount:
            raise ValidationFailed(
                f"line {number}: amount must be a non-negative decimal", details={**at, "column": "amount"}
            )
        if (day, model) in lines:
            raise ValidationFailed(f"line {number}: {day} {model} appears twice", details=at)
        lines[(day, model)] = UpstreamStatementLine(
            day=day,
            model_code=model,
            input_tokens=tokens["input"],
            cached_input_tokens=tokens["cached_input"],
            cache_write_tokens=tokens["cache_write"],
            output_tokens=tokens["output"],
            amount=amount,
        )
    if not lines:
        raise ValidationFailed("the statement has no lines", details=where)
    digest = hashlib.sha256(text.encode()).hexdigest()
    days = [day for day, _ in lines]
    with transaction.atomic():
        existing = UpstreamStatement.objects.filter(book=book, provider=provider, reference=reference).first()
        if existing is None:
            try:
                with transaction.atomic():
                    statement = UpstreamStatement.objects.create(
                        book=book,
                        provider=provider,
                        reference=reference,
                        content_hash=digest,
                        day_from=min(days),
                        day_to=max(days),
                        imported_at=imported_at,
                    )
            except IntegrityError:
                existing = UpstreamStatement.objects.get(book=book, provider=provider, reference=reference)
        if existing is not None:
            if existing.content_hash != digest:
                raise Conflict(
                    "a statement with this reference was already imported with other content",
                    details={**where, "statement": existing.pk},
                )
            return existing
        for line in lines.values():
            line.statement = statement
        UpstreamStatementLine.objects.bulk_create(lines.values())
    return statement
