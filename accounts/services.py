"""The only writer of the account tree, price lists, top-ups, API keys and the audit trail (§4).

Tree rules: a customer has no children, a child bills in its parent's currency, an account never
moves to another parent (its book, invoices and receivables would change owner; close it and open a
new one instead), prepaid accounts have no credit limit, codes are globally unique. A distributor
gets its own book with its first child, and its children are billed from that book.

Every change to terms, limits, status and prices leaves an AuditRecord (who, when, before, after).
"""

from __future__ import annotations

import re
import secrets
import uuid
import zoneinfo
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import (
    API_KEY_SCOPES,
    TOKEN_CLASSES,
    Account,
    ApiKey,
    AuditRecord,
    Kind,
    PriceList,
    PriceOverride,
    PriceRule,
    Status,
    Terms,
    Topup,
)
from accounts.selectors import api_key_cache_invalidate
from distributor.errors import Conflict, ValidationFailed
from distributor.money import (
    AMOUNT_DECIMAL_PLACES,
    MONEY_CONTEXT,
    PRICE_DECIMAL_PLACES,
    check_currency,
    normalize,
    round_minor,
    to_decimal,
)
from ledger.models import Book
from ledger.services import book_create, credit, debit, entry_post

CODE_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
RATE_DECIMAL_PLACES: Final = 8
SECRET_PREFIX: Final = "dk_"
# Enough of the secret to tell keys apart in a list, far too little to guess the rest.
SHOWN_PREFIX_LENGTH: Final = 10
# pg_advisory_xact_lock class for receipt numbering; the object id is the book's id.
RECEIPT_LOCK_CLASS: Final = 0x5EC1


class _Unset:
    """Marks an argument of `account_update` the caller did not pass (None is a real value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()

Actor = AbstractBaseUser | AnonymousUser | None


# --- audit -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return normalize(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditRecord:
    """Write one audit row; callers run inside their own transaction so the trace commits with the change."""
    return AuditRecord.objects.create(
        actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk),
        object_repr=str(obj)[:300],
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
    )


def _account_snapshot(account: Account) -> dict[str, Any]:
    return {
        "code": account.code,
        "name": account.name,
        "parent": account.parent.code if account.parent_id and account.parent else None,
        "kind": account.kind,
        "currency": account.currency,
        "terms": account.terms,
        "net_days": account.net_days,
        "credit_limit": account.credit_limit,
        "status": account.status,
        "tax_rate": account.tax_rate,
        "commitment": account.commitment,
        "book": account.book.code,
        "own_book": account.own_book.code if account.own_book_id and account.own_book else None,
    }


# --- validation --------------------------------------------------------------------------------


def _choice(value: str, *, field: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise ValidationFailed(
            f"{field} must be one of {', '.join(allowed)}, not {value!r}",
            details={field: value, "allowed": allowed},
        )
    return value


def _places_at_most(value: Decimal, places: int, *, field: str) -> Decimal:
    if value != value.quantize(Decimal(1).scaleb(-places), context=MONEY_CONTEXT):
        raise ValidationFailed(
            f"{field} carries more than {places} decimal places: {value}", details={field: str(value)}
        )
    return value


def _non_negative(value: object, *, field: str, places: int = AMOUNT_DECIMAL_PLACES) -> Decimal:
    amount = to_decimal(value, field=field)
    if amount < 0:
        raise ValidationFailed(f"{field} must not be negative, got {amount}", details={field: str(amount)})
    return _places_at_most(amount, places, field=field)


def _rate(value: object, *, field: str, at_most_one: bool) -> Decimal:
    rate = _non_negative(value, field=field, places=RATE_DECIMAL_PLACES)
    if at_most_one and rate > 1:
        raise ValidationFailed(f"{field} must be between 0 and 1, got {rate}", details={field: str(rate)})
    return rate


def _aware(moment: datetime, *, field: str) -> datetime:
    if not isinstance(moment, datetime) or timezone.is_naive(moment):
        raise ValidationFailed(f"{field} must be a datetime with a time zone", details={field: str(moment)})
    return moment


def _terms_and_limit(terms: str, credit_limit: Decimal | None) -> None:
    if terms == Terms.PREPAID and credit_limit is not None:
        raise ValidationFailed(
            "a prepaid account has no credit limit: it spends its wallet",
            details={"terms": terms, "credit_limit": str(credit_limit)},
        )


def _credit_refresh_on_commit(account_ids: list[int]) -> None:
    """The gateway's credit cache (settlement) must see a new status, limit or wallet at once."""
    # Imported here: settlement's services import accounts.
    from settlement.services.credit_control import credit_states_refresh_on_commit

    credit_states_refresh_on_commit(account_ids=account_ids)


# --- the tree ----------------------------------------------------------------------------------


def _root_book_of(parent: Account) -> int:
    """The book that bills the parent's top-level ancestor: the root book of its tree."""
    if not parent.ancestor_ids:
        return parent.book_id
    top = Account.objects.only("book_id").get(pk=parent.ancestor_ids[0])
    return top.book_id


def _own_book_open(*, distributor: Account, root_book: Book, actor: Actor) -> Book:
    """The distributor's own book, created with its first child: same code and currency as the
    account, the root book's time zone and grace days (one close calendar across the tree)."""
    if Book.objects.filter(code=distributor.code).exists():
        raise Conflict(
            f"a book with code {distributor.code!r} already exists, so {distributor.code!r} cannot open its own",
            details={"code": distributor.code},
        )
    before = _account_snapshot(distributor)
    book = book_create(
        code=distributor.code,
        name=distributor.name,
        currency=distributor.currency,
        timezone=root_book.timezone,
        grace_days=root_book.grace_days,
    )
    distributor.own_book = book
    distributor.save(update_fields=["own_book", "updated_at"])
    audit_record(
        actor=actor,
        action="account.own_book_open",
        obj=distributor,
        before=before,
        after=_account_snapshot(distributor),
    )
    return book


def account_create(
    *,
    root_book: Book,
    code: str,
    name: str,
    parent: Account | None = None,
    kind: str,
    currency: str,
    terms: str,
    net_days: int = 30,
    credit_limit: Decimal | None = None,
    tax_rate: Decimal = Decimal(0),
    commitment: Decimal = Decimal(0),
    status: str = "active",
    actor: Actor = None,
) -> Account:
    """Open an account under `parent` (None: a direct child of the root, billed from `root_book`)."""
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise ValidationFailed(
            "account code must be 1 to 64 lowercase letters, digits, '.', '_' or '-'", details={"code": code}
        )
    if not name:
        raise ValidationFailed("account name is required", details={"code": code})
    _choice(kind, field="kind", allowed=Kind.values)
    _choice(terms, field="terms", allowed=Terms.values)
    _choice(status, field="status", allowed=Status.values)
    check_currency(currency)
    if not isinstance(net_days, int) or isinstance(net_days, bool) or net_days < 0:
        raise ValidationFailed("net_days must be a non-negative whole number", details={"net_days": net_days})
    limit = None if credit_limit is None else _non_negative(credit_limit, field="credit_limit")
    _terms_and_limit(terms, limit)
    tax = _rate(tax_rate, field="tax_rate", at_most_one=True)
    minimum = _non_negative(commitment, field="commitment")

    caller_parent = parent
    with transaction.atomic():
        book = root_book
        ancestors: list[int] = []
        if parent is not None:
            # Locked so two first children cannot both open the parent's book.
            parent = (
                Account.objects.select_for_update(of=("self",)).select_related("own_book").get(pk=parent.pk)
            )
            if parent.kind != Kind.DISTRIBUTOR:
                raise ValidationFailed(
                    f"{parent.code!r} is a customer: a customer has no children",
                    details={"parent": parent.code, "kind": parent.kind},
                )
            if parent.status == Status.CLOSED:
                raise ValidationFailed(
                    f"{parent.code!r} is closed and takes no new children", details={"parent": parent.code}
                )
            if parent.currency != currency:
                raise ValidationFailed(
                    f"a child bills in its parent's currency: {parent.code!r} is {parent.currency}, not {currency}",
                    details={"parent": parent.code, "parent_currency": parent.currency, "currency": currency},
                )
            if _root_book_of(parent) != root_book.pk:
                raise ValidationFailed(
                    f"{parent.code!r} does not belong to the tree of book {root_book.code!r}",
                    details={"parent": parent.code, "root_book": root_book.code},
                )
            book = parent.own_book or _own_book_open(distributor=parent, root_book=root_book, actor=actor)
            ancestors = [*parent.ancestor_ids, parent.pk]
        if Account.objects.filter(code=code).exists():
            raise Conflict(f"account {code!r} already exists", details={"code": code})
        try:
            with transaction.atomic():
                account = Account.objects.create(
                    code=code,
                    name=name,
                    parent=parent,
                    kind=kind,
                    currency=currency,
                    terms=terms,
                    net_days=net_days,
                    credit_limit=limit,
                    status=status,
                    tax_rate=tax,
                    commitment=minimum,
                    book=book,
                    ancestor_ids=ancestors,
                    depth=len(ancestors),
                )
        except IntegrityError as exc:  # a parallel create took the code between the check and the insert
            raise Conflict(f"account {code!r} already exists", details={"code": code}) from exc
        audit_record(
            actor=actor, action="account.create", obj=account, before=None, after=_account_snapshot(account)
        )
    if caller_parent is not None and caller_parent.own_book_id is None:
        caller_parent.own_book = book  # the caller's instance sees the book its first child opened
    return account


def account_update(
    *,
    account: Account,
    actor: Actor = None,
    name: str | _Unset = UNSET,
    kind: str | _Unset = UNSET,
    terms: str | _Unset = UNSET,
    net_days: int | _Unset = UNSET,
    credit_limit: Decimal | None | _Unset = UNSET,
    status: str | _Unset = UNSET,
    tax_rate: Decimal | _Unset = UNSET,
    commitment: Decimal | _Unset = UNSET,
) -> Account:
    """Change an account's name, kind, terms, limit, status, tax rate or commitment, audited.

    Code, currency and parent never change: they fix which book bills the account and in what
    money. Moving prepaid requires clearing the credit limit in the same call."""
    with transaction.atomic():
        locked = (
            Account.objects.select_for_update(of=("self",))
            .select_related("parent", "book", "own_book")
            .get(pk=account.pk)
        )
        before = _account_snapshot(locked)
        if not isinstance(name, _Unset):
            if not name:
                raise ValidationFailed("account name is required", details={"code": locked.code})
            locked.name = name
        if not isinstance(kind, _Unset):
            _choice(kind, field="kind", allowed=Kind.values)
            if kind == Kind.CUSTOMER and locked.children.exists():
                raise ValidationFailed(
                    f"{locked.code!r} has children: a customer has no children", details={"code": locked.code}
                )
            if kind == Kind.CUSTOMER and locked.own_book_id is not None:
                raise ValidationFailed(
                    f"{locked.code!r} keeps its own book and stays a distributor",
                    details={"code": locked.code},
                )
            locked.kind = kind
        if not isinstance(terms, _Unset):
            locked.terms = _choice(terms, field="terms", allowed=Terms.values)
        if not isinstance(net_days, _Unset):
            if not isinstance(net_days, int) or isinstance(net_days, bool) or net_days < 0:
                raise ValidationFailed(
                    "net_days must be a non-negative whole number", details={"net_days": net_days}
                )
            locked.net_days = net_days
        if not isinstance(credit_limit, _Unset):
            locked.credit_limit = (
                None if credit_limit is None else _non_negative(credit_limit, field="credit_limit")
            )
        if not isinstance(status, _Unset):
            locked.status = _choice(status, field="status", allowed=Status.values)
        if not isinstance(tax_rate, _Unset):
            locked.tax_rate = _rate(tax_rate, field="tax_rate", at_most_one=True)
        if not isinstance(commitment, _Unset):
            locked.commitment = _non_negative(commitment, field="commitment")
        _terms_and_limit(locked.terms, locked.credit_limit)
        after = _account_snapshot(locked)
        if after == before:
            return locked
        locked.save()
        audit_record(actor=actor, action="account.update", obj=locked, before=before, after=after)
        refreshed = [locked.pk]
        if after["status"] != before["status"]:
            refreshed += list(
                Account.objects.filter(ancestor_ids__contains=[locked.pk]).values_list("pk", flat=True)
            )
            if locked.status in (Status.ON_HOLD, Status.SUSPENDED):
                _status_webhook_emit(account=locked, previous=before["status"])
            if Status.CLOSED in (locked.status, before["status"]):
                # A closed account's keys are refused (and a reopened one's work again) at once.
                api_key_cache_invalidate(
                    secret_hashes=list(
                        ApiKey.objects.filter(account=locked).values_list("secret_hash", flat=True)
                    )
                )
        _credit_refresh_on_commit(refreshed)
    return locked


def _status_webhook_emit(*, account: Account, previous: str) -> None:
    """`account.on_hold` / `account.suspended` to the account's and its ancestors' endpoints, from
    whoever set it (dunning, finance in the admin, a reseller through the API), in the same
    transaction; one event per status change."""
    from accounts.webhooks import webhook_event_emit

    webhook_event_emit(
        account=account,
        event=f"account.{account.status}",
        payload={
            "account": account.code,
            "status": account.status,
            "previous_status": previous,
            "at": _iso(account.updated_at),
        },
        dedupe_key=f"account.{account.status}:{account.code}:{_iso(account.updated_at)}",
    )


# --- price lists -------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _price_list_snapshot(price_list: PriceList) -> dict[str, Any]:
    overrides: dict[str, dict[str, str]] = {}
    for override in price_list.overrides.all():
        overrides.setdefault(override.model_code, {})[override.token_class] = normalize(override.unit_price)
    return {
        "account": price_list.account.code,
        "effective_from": _iso(price_list.effective_from),
        "rule": price_list.rule,
        "rate": normalize(price_list.rate),
        "overrides": overrides,
    }


def _overrides_clean(overrides: dict[str, dict[str, Any]]) -> list[tuple[str, str, Decimal]]:
    from procurement.models import ProviderModel

    if not isinstance(overrides, dict):
        raise ValidationFailed("overrides must map model codes to {token class: price}")
    known = set(ProviderModel.objects.filter(code__in=list(overrides)).values_list("code", flat=True))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValidationFailed(
            f"unknown model {unknown[0]!r} in price overrides", details={"models": unknown}
        )
    rows: list[tuple[str, str, Decimal]] = []
    for model_code, prices in sorted(overrides.items()):
        if not isinstance(prices, dict) or not prices:
            raise ValidationFailed(
                f"overrides of {model_code!r} must map token classes to prices", details={"model": model_code}
            )
        for token_class, price in sorted(prices.items()):
            _choice(token_class, field="token_class", allowed=list(TOKEN_CLASSES))
            rows.append(
                (
                    model_code,
                    token_class,
                    _non_negative(
                        price, field=f"{model_code} {token_class} price", places=PRICE_DECIMAL_PLACES
                    ),
                )
            )
    return rows


def price_list_set(
    *,
    account: Account,
    effective_from: datetime,
    rule: str,
    rate: Decimal,
    overrides: dict[str, dict[str, Decimal]] | None = None,
    actor: Actor = None,
) -> PriceList:
    """Add the version of `account`'s price list in force from `effective_from`.

    Append-only: a version may not take effect before the latest one (that would reprice usage
    already rated); the same version set twice with the same content returns the first."""
    _aware(effective_from, field="effective_from")
    _choice(rule, field="rule", allowed=PriceRule.values)
    clean_rate = _rate(rate, field="rate", at_most_one=rule == PriceRule.DISCOUNT)
    rows = _overrides_clean(overrides or {})
    wanted_overrides: dict[str, dict[str, str]] = {}
    for model_code, token_class, price in rows:
        wanted_overrides.setdefault(model_code, {})[token_class] = normalize(price)
    wanted = {
        "account": account.code,
        "effective_from": _iso(effective_from),
        "rule": rule,
        "rate": normalize(clean_rate),
        "overrides": wanted_overrides,
    }
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        latest = (
            PriceList.objects.filter(account=locked)
            .select_related("account")
            .prefetch_related("overrides")
            .order_by("-effective_from")
            .first()
        )
        same_time = PriceList.objects.filter(account=locked, effective_from=effective_from).first()
        if same_time is not None:
            if _price_list_snapshot(same_time) == wanted:
                return same_time
            raise Conflict(
                f"{locked.code!r} already has a price list from {effective_from.isoformat()}; "
                "price lists are append-only, add a later version",
                details={"account": locked.code, "effective_from": effective_from.isoformat()},
            )
        if latest is not None and latest.effective_from > effective_from:
            raise ValidationFailed(
                f"price lists are append-only: {locked.code!r} has a version from "
                f"{latest.effective_from.isoformat()}, a new one must take effect after it",
                details={"account": locked.code, "latest": latest.effective_from.isoformat()},
            )
        price_list = PriceList.objects.create(
            account=locked, effective_from=effective_from, rule=rule, rate=clean_rate
        )
        PriceOverride.objects.bulk_create(
            PriceOverride(price_list=price_list, model_code=m, token_class=c, unit_price=p)
            for m, c, p in rows
        )
        audit_record(
            actor=actor,
            action="price_list.set",
            obj=price_list,
            before=_price_list_snapshot(latest) if latest is not None else None,
            after=wanted,
        )
    return price_list


# --- prepaid top-ups ---------------------------------------------------------------------------


def _receipt_number(book: Book, at: datetime) -> str:
    """`<book>-R<year>-<seq>`: gapless per book and year (the book's zone), numbered under a lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [RECEIPT_LOCK_CLASS, book.pk])
    year = at.astimezone(zoneinfo.ZoneInfo(book.timezone)).year
    prefix = f"{book.code}-R{year}-"
    issued = Topup.objects.filter(account__book=book, receipt_number__startswith=prefix).count()
    return f"{prefix}{issued + 1:06d}"


def topup_record(
    *, account: Account, amount: Decimal, at: datetime, reference: str = "", actor: Actor = None
) -> Topup:
    """Cash into a prepaid account's wallet: debit cash, credit customer deposits for the account,
    in the book that bills it. Idempotent on `reference` (the bank or card reference): the same
    reference and amount return the first top-up; a different amount under it is refused."""
    _aware(at, field="at")
    value = to_decimal(amount, field="amount")
    if value <= 0:
        raise ValidationFailed(f"a top-up must be positive, got {value}", details={"amount": str(value)})
    with transaction.atomic():
        locked = Account.objects.select_for_update(of=("self",)).select_related("book").get(pk=account.pk)
        if locked.terms != Terms.PREPAID:
            raise ValidationFailed(
                f"{locked.code!r} is {locked.terms}: only prepaid accounts take top-ups; record a payment instead",
                details={"account": locked.code, "terms": locked.terms},
            )
        if locked.status == Status.CLOSED:
            raise ValidationFailed(f"{locked.code!r} is closed", details={"account": locked.code})
        if round_minor(value, locked.currency) != value:
            raise ValidationFailed(
                f"a top-up is cash: {value} has more places than {locked.currency} allows",
                details={"amount": str(value), "currency": locked.currency},
            )
        ref = reference.strip() or f"auto-{uuid.uuid4().hex}"
        existing = Topup.objects.filter(account=locked, reference=ref).first()
        if existing is not None:
            if existing.amount == value:
                return existing
            raise Conflict(
                f"reference {ref!r} was already recorded for {locked.code!r} with amount {normalize(existing.amount)}",
                details={"account": locked.code, "reference": ref, "amount": normalize(existing.amount)},
            )
        receipt = _receipt_number(locked.book, at)
        entry = entry_post(
            book=locked.book,
            idempotency_key=f"topup:{locked.code}:{ref}",
            occurred_at=at,
            legs=[
                debit("cash", value, locked.currency),
                credit("customer_deposits", value, locked.currency, counterparty=locked.counterparty),
            ],
            description=f"Top-up by {locked.code}, receipt {receipt}",
            source_type="topup",
            source_id=receipt,
        )
        topup = Topup.objects.create(
            account=locked,
            amount=value,
            currency=locked.currency,
            at=at,
            reference=ref,
            receipt_number=receipt,
            entry=entry,
        )
        _credit_refresh_on_commit([locked.pk])
    return topup


# --- API keys ----------------------------------------------------------------------------------


def api_key_create(
    *,
    account: Account | None,
    scopes: list[str],
    name: str = "",
    expires_at: datetime | None = None,
    actor: Actor = None,
) -> tuple[ApiKey, str]:
    """Issue a key; the secret is returned once and only its SHA-256 is kept.
    `account=None` issues the root's service key (the gateway: usage for any account)."""
    wanted = list(dict.fromkeys(scopes))
    if not wanted:
        raise ValidationFailed(
            "an API key needs at least one scope", details={"allowed": list(API_KEY_SCOPES)}
        )
    for scope in wanted:
        _choice(scope, field="scope", allowed=list(API_KEY_SCOPES))
    if expires_at is not None:
        _aware(expires_at, field="expires_at")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            account=account,
            name=name,
            prefix=secret[:SHOWN_PREFIX_LENGTH],
            secret_hash=ApiKey.hash_of(secret),
            scopes=wanted,
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="api_key.create",
            obj=key,
            before=None,
            after={
                "account": account.code if account else None,
                "prefix": key.prefix,
                "scopes": wanted,
                "expires_at": expires_at,
            },
        )
    return key, secret


def api_key_revoke(*, key: ApiKey, actor: Actor = None, now: datetime | None = None) -> ApiKey:
    """Revoke a key from now on; revoking twice keeps the first time."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = now or timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="api_key.revoke",
                obj=locked,
                before={"revoked_at": None},
                after={"revoked_at": locked.revoked_at},
            )
            # Refused from the next request on, not when the authentication cache's entry runs out.
            api_key_cache_invalidate(secret_hashes=[locked.secret_hash])
    return locked
