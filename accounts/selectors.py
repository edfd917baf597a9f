"""Reads of the account tree, price lists, wallets and API keys.

The cascade of prices (§4) for any number of (account, model, moment) requests is one SQL query:
each request's path (the account and its `ancestor_ids`) is unnested WITH ORDINALITY, and LATERAL
joins pick, per hop, the price list in force at that moment with its overrides for the model, and
the model's list-price version in force. Rating a batch never walks the tree hop by hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import TOKEN_CLASSES, Account, ApiKey, PriceList, PriceOverride, PriceRule, Status
from distributor.errors import NotFound, ValidationFailed


@dataclass(frozen=True, slots=True)
class Hop:
    """One payer of the cascade: `payer` owes `payee_account` (None = the root) in `payee_book` at `prices`."""

    payer_id: int
    payer_code: str
    payee_book_id: int
    payee_account_id: int | None
    terms: str
    prices: dict[str, Decimal | None]
    price_list_id: int | None


@dataclass(frozen=True, slots=True)
class Cascade:
    """Every hop's price for one model at one moment, leaf first, and the root's list prices."""

    hops: list[Hop]
    root_book_id: int
    provider_id: int
    provider_code: str
    model_id: int
    list_prices: dict[str, Decimal | None]
    list_price_version_id: int | None


CascadeKey = tuple[int, str, datetime]


def _cascade_sql() -> str:
    from procurement.models import ListPriceVersion, Provider, ProviderModel

    account = Account._meta.db_table
    price_list = PriceList._meta.db_table
    override = PriceOverride._meta.db_table
    version = ListPriceVersion._meta.db_table
    model = ProviderModel._meta.db_table
    provider = Provider._meta.db_table
    classes = ", ".join(f"lp.{c}" for c in TOKEN_CLASSES)
    version_classes = ", ".join(f"v.{c}" for c in TOKEN_CLASSES)
    return f"""
        SELECT req.idx, hop.pos, h.id, h.code, h.book_id, h.parent_id, h.terms,
               pl.id, pl.rule, pl.rate, ov.classes, ov.prices,
               m.id, p.id, p.code, lp.id, {classes}
        FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[])
             WITH ORDINALITY AS req(account_id, model_code, at, idx)
        JOIN {account} leaf ON leaf.id = req.account_id
        JOIN {model} m ON m.code = req.model_code
        JOIN {provider} p ON p.id = m.provider_id
        LEFT JOIN LATERAL (
            SELECT v.id, {version_classes} FROM {version} v
            WHERE v.model_id = m.id AND v.effective_from <= req.at
            ORDER BY v.effective_from DESC LIMIT 1
        ) lp ON true
        CROSS JOIN LATERAL unnest(leaf.ancestor_ids || leaf.id) WITH ORDINALITY AS hop(account_id, pos)
        JOIN {account} h ON h.id = hop.account_id
        LEFT JOIN LATERAL (
            SELECT l.id, l.rule, l.rate FROM {price_list} l
            WHERE l.account_id = h.id AND l.effective_from <= req.at
            ORDER BY l.effective_from DESC, l.id DESC LIMIT 1
        ) pl ON true
        LEFT JOIN LATERAL (
            SELECT array_agg(o.token_class) AS classes, array_agg(o.unit_price) AS prices
            FROM {override} o WHERE o.price_list_id = pl.id AND o.model_code = req.model_code
        ) ov ON true
        ORDER BY req.idx, hop.pos DESC
    """


def hop_prices(
    *,
    list_prices: dict[str, Decimal | None],
    rule: str | None,
    rate: Decimal | None,
    overrides: dict[str, Decimal],
) -> dict[str, Decimal | None]:
    """A hop's unit prices: the override where there is one, else list x (1 - d) or list x (1 + m).
    Exact (§2): no rounding. No price list in force, or no list price for a class, means no price."""
    prices: dict[str, Decimal | None] = {}
    for token_class in TOKEN_CLASSES:
        listed = list_prices.get(token_class)
        if token_class in overrides:
            prices[token_class] = overrides[token_class]
        elif rule is None or rate is None or listed is None:
            prices[token_class] = None
        elif rule == PriceRule.DISCOUNT:
            prices[token_class] = listed * (1 - rate)
        else:
            prices[token_class] = listed * (1 + rate)
    return prices


def cascade_prices_many(*, requests: Iterable[CascadeKey]) -> dict[CascadeKey, Cascade]:
    """The cascade for each (account id, model code, moment), in one query. A request whose account
    or model does not exist is absent from the answer; a model with no list price in force at that
    moment has `list_price_version_id` None and no list prices."""
    wanted = list(dict.fromkeys(requests))
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _cascade_sql(),
            [[r[0] for r in wanted], [r[1] for r in wanted], [r[2] for r in wanted]],
        )
        rows = cursor.fetchall()
    by_request: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_request.setdefault(row[0], []).append(row)
    answer: dict[CascadeKey, Cascade] = {}
    for idx, hop_rows in by_request.items():
        first = hop_rows[0]
        list_prices: dict[str, Decimal | None] = dict(zip(TOKEN_CLASSES, first[16:20], strict=True))
        hops: list[Hop] = []
        for row in hop_rows:
            (_, _, payer_id, payer_code, book_id, parent_id, terms, pl_id, rule, rate, classes, prices) = row[
                :12
            ]
            overrides = dict(zip(classes or [], prices or [], strict=True))
            hops.append(
                Hop(
                    payer_id=payer_id,
                    payer_code=payer_code,
                    payee_book_id=book_id,
                    payee_account_id=parent_id,
                    terms=terms,
                    prices=hop_prices(list_prices=list_prices, rule=rule, rate=rate, overrides=overrides),
                    price_list_id=pl_id,
                )
            )
        answer[wanted[idx - 1]] = Cascade(
            hops=hops,
            root_book_id=hops[-1].payee_book_id,
            provider_id=first[13],
            provider_code=first[14],
            model_id=first[12],
            list_prices=list_prices,
            list_price_version_id=first[15],
        )
    return answer


def cascade_prices(*, account: Account, model_code: str, at: datetime) -> Cascade:
    """The cascade for one call by `account` of `model_code` at `at` (one query)."""
    found = cascade_prices_many(requests=[(account.pk, model_code, at)]).get((account.pk, model_code, at))
    if found is None:
        raise NotFound(f"unknown model {model_code!r}", details={"model": model_code})
    return found


def account_price(*, account: Account, model_code: str, token_class: str, at: datetime) -> Decimal:
    """What `account` pays its parent per 1M tokens of `token_class` of `model_code` at `at`."""
    if token_class not in TOKEN_CLASSES:
        raise ValidationFailed(
            f"token class must be one of {', '.join(TOKEN_CLASSES)}, not {token_class!r}",
            details={"token_class": token_class},
        )
    price = cascade_prices(account=account, model_code=model_code, at=at).hops[0].prices[token_class]
    if price is None:
        raise ValidationFailed(
            f"{account.code!r} has no price for {token_class} tokens of {model_code} at {at.isoformat()}",
            details={"account": account.code, "model": model_code, "token_class": token_class},
        )
    return price


def wallet_balance(*, account: Account) -> Decimal:
    """A prepaid account's deposit balance: customer deposits held for it in the book that bills it."""
    from ledger.models import AccountBalance

    row = (
        AccountBalance.objects.filter(
            ledger_account__book_id=account.book_id,
            ledger_account__code="customer_deposits",
            counterparty=account.counterparty,
            currency=account.currency,
        )
        .values_list("debits", "credits")
        .first()
    )
    if row is None:
        return Decimal(0)
    debits, credits = row
    return credits - debits


def account_subtree(*, account: Account) -> QuerySet[Account]:
    """The account and all its descendants: the scope of what its users may see."""
    return Account.objects.filter(Q(pk=account.pk) | Q(ancestor_ids__contains=[account.pk])).select_related(
        "parent", "book"
    )


def account_children(*, account: Account | None) -> QuerySet[Account]:
    """Direct children of `account` (None: the root's direct children)."""
    if account is None:
        return Account.objects.filter(parent__isnull=True).select_related("book")
    return Account.objects.filter(parent=account).select_related("book")


# Verifying the key was a third of an authorization request's time (docs/benchmarks.md): the gateway
# presents the same few keys thousands of times a minute. What authentication needs of a key is kept
# in the Django cache (Redis in production, shared by every web process) for a short while. Revoking a
# key or closing its account rewrites its entry (api_key_cache_invalidate), so a revoked key is
# refused on the next request; expiry is checked against the clock on every request, cached or not.
API_KEY_CACHE_SECONDS = 60
_API_KEY_CACHE_PREFIX = "api-key:v1:"

# (key id, account id or None, scopes, expires_at, revoked, account closed, prefix, name)
_CachedKey = tuple[int, int | None, list[str], datetime | None, bool, bool, str, str]


def _api_key_cache_key(secret_hash: str) -> str:
    return _API_KEY_CACHE_PREFIX + secret_hash


def _api_keys_read(*, secret_hashes: list[str]) -> dict[str, _CachedKey]:
    rows = ApiKey.objects.filter(secret_hash__in=secret_hashes).values_list(
        "secret_hash",
        "pk",
        "account_id",
        "scopes",
        "expires_at",
        "revoked_at",
        "account__status",
        "prefix",
        "name",
    )
    return {
        row[0]: (
            row[1],
            row[2],
            list(row[3]),
            row[4],
            row[5] is not None,
            row[6] == Status.CLOSED,
            row[7],
            row[8],
        )
        for row in rows
    }


def api_key_cache_refresh(*, secret_hashes: list[str]) -> None:
    """Overwrite the cached entries of these keys with what the database holds now (a key no longer
    there is forgotten). Called once a revocation or an account's closing has committed."""
    if not secret_hashes:
        return
    found = _api_keys_read(secret_hashes=secret_hashes)
    cache.set_many({_api_key_cache_key(h): v for h, v in found.items()}, API_KEY_CACHE_SECONDS)
    gone = [_api_key_cache_key(h) for h in secret_hashes if h not in found]
    if gone:
        cache.delete_many(gone)


def api_key_cache_invalidate(*, secret_hashes: list[str]) -> None:
    """Forget these keys' cached entries now and rewrite them once the surrounding transaction commits.
    The rewrite (a plain set, where readers only add) wins over a reader that read the row before the
    commit and caches it after the forgetting."""
    wanted = list(secret_hashes)
    if not wanted:
        return
    cache.delete_many([_api_key_cache_key(h) for h in wanted])
    transaction.on_commit(lambda: api_key_cache_refresh(secret_hashes=wanted))


def api_key_cache_key_of(*, secret: str) -> str:
    """The cache key under which api_key_authenticate keeps what it knows of this secret's key (for
    a caller that reads it together with other entries in one round trip)."""
    return _api_key_cache_key(ApiKey.hash_of(secret))


def api_key_entry_usable(entry: _CachedKey, *, now: datetime) -> bool:
    """A cached key may authenticate: not revoked, its account not closed, not expired at `now`."""
    _, _, _, expires_at, revoked, account_closed, _, _ = entry
    return not revoked and not account_closed and (expires_at is None or expires_at > now)


def api_key_authenticate(*, secret: str, now: datetime | None = None) -> ApiKey | None:
    """The key with this secret if it is neither revoked nor expired and its account is not closed.
    Answered from the cache when it can be; the key's account is then loaded only if asked for."""
    if not secret:
        return None
    secret_hash = ApiKey.hash_of(secret)
    cache_key = _api_key_cache_key(secret_hash)
    entry: _CachedKey | None = cache.get(cache_key)
    if entry is None:
        entry = _api_keys_read(secret_hashes=[secret_hash]).get(secret_hash)
        if entry is None:
            return None  # unknown secrets are not cached: anyone could fill the cache with them
        # add, not set: a revocation's rewrite that landed first is not overwritten with older news.
        cache.add(cache_key, entry, API_KEY_CACHE_SECONDS)
    if not api_key_entry_usable(entry, now=now or timezone.now()):
        return None
    key_id, account_id, scopes, expires_at, _, _, prefix, name = entry
    key = ApiKey(
        id=key_id,
        account_id=account_id,
        scopes=scopes,
        expires_at=expires_at,
        revoked_at=None,
        secret_hash=secret_hash,
        prefix=prefix,
        name=name,
    )
    key._state.adding = False
    key._state.db = "default"
    return key
