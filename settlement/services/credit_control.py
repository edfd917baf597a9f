"""Credit control (§6, §11.8): may this account spend right now?

The gateway asks before every call, so the answer comes from the cache (Redis in production), not
from a scan: one entry per account holding its status and available credit, refreshed by ingestion
for every account a batch touched and by whoever changes a status, limit, payment or invoice
(`credit_states_refresh`). An answer combines the account's entry with its ancestors' in one
`get_many` round trip, so a hold on a distributor stops its whole subtree at once. A cache miss is
recomputed from the database and stored.

Available credit: prepaid = the wallet; postpaid = credit limit (None counts as 0) - open
receivables - unbilled usage + credit balance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction

CACHE_PREFIX = "settlement:credit:"
# Refreshes keep entries current; the timeout only bounds how long a missed refresh can linger.
CACHE_TIMEOUT_SECONDS = 300
# Blocking order of statuses: the first non-active one found is the reason.
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class CreditState:
    account_id: int
    code: str
    status: str
    terms: str
    currency: str
    available: Decimal

    def as_cache(self) -> dict[str, str | int]:
        return {
            "id": self.account_id,
            "code": self.code,
            "status": self.status,
            "terms": self.terms,
            "currency": self.currency,
            "available": str(self.available),
        }

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> CreditState:
        return cls(
            account_id=int(value["id"]),
            code=str(value["code"]),
            status=str(value["status"]),
            terms=str(value["terms"]),
            currency=str(value["currency"]),
            available=Decimal(value["available"]),
        )


def _cache_key(account_id: int) -> str:
    return f"{CACHE_PREFIX}{account_id}"


# Each account with its receivable (debit-normal) and deposits (credit-normal) in its own book and
# currency, both as a positive "owed" figure (0 without a balance row).
_ACCOUNTS_WITH_BALANCES = """
SELECT a.id, a.code, a.status, a.terms, a.currency, a.credit_limit,
       COALESCE(owed.receivable, 0), COALESCE(owed.deposits, 0)
FROM accounts_account a
LEFT JOIN LATERAL (
    SELECT sum(b.debits - b.credits) FILTER (WHERE la.code = 'receivables') AS receivable,
           sum(b.credits - b.debits) FILTER (WHERE la.code = 'customer_deposits') AS deposits
    FROM ledger_ledgeraccount la
    JOIN ledger_accountbalance b ON b.ledger_account_id = la.id
    WHERE la.book_id = a.book_id AND la.code IN ('receivables', 'customer_deposits')
      AND b.counterparty = 'account:' || a.code AND b.currency = a.currency
) owed ON true
WHERE a.id = ANY(%s)
"""


def credit_states_compute(*, account_ids: Iterable[int]) -> dict[int, CreditState]:
    """Status and available credit of these accounts from the database, set-based (two queries)."""
    from settlement.selectors import unbilled_by_payer

    ids = set(account_ids)
    if not ids:
        return {}
    with connection.cursor() as cursor:
        # One statement, not two ORM queries: it runs for ~450 accounts after every usage batch.
        cursor.execute(_ACCOUNTS_WITH_BALANCES, [sorted(ids)])
        accounts = cursor.fetchall()
    unbilled = unbilled_by_payer(payer_account_ids=ids)
    states: dict[int, CreditState] = {}
    for pk, code, status, terms, currency, credit_limit, receivable, deposits in accounts:
        if terms == "prepaid":
            available = max(deposits, Decimal(0))
        else:
            # §11.8; a credit balance (overpayment held as a deposit) adds to what may be spent.
            available = (
                (credit_limit or Decimal(0)) - receivable - (unbilled.get(pk) or Decimal(0)) + deposits
            )
        states[pk] = CreditState(
            account_id=pk, code=code, status=status, terms=terms, currency=currency, available=available
        )
    return states


def credit_states_refresh(*, account_ids: Iterable[int]) -> dict[int, CreditState]:
    """Recompute these accounts' entries and store them. Call it after anything that changes a
    status, a limit, a receivable or a wallet (ingestion does it for every batch)."""
    states = credit_states_compute(account_ids=account_ids)
    cache.set_many({_cache_key(pk): s.as_cache() for pk, s in states.items()}, timeout=CACHE_TIMEOUT_SECONDS)
    return states


def credit_states_refresh_on_commit(*, account_ids: Iterable[int]) -> None:
    """`credit_states_refresh` once the caller's transaction commits (at once outside one): the
    gateway's next authorize sees what the change did, and never a change that was rolled back."""
    ids = list(account_ids)
    transaction.on_commit(lambda: credit_states_refresh(account_ids=ids))


def credit_cache_keys(*, account_ids: Iterable[int]) -> list[str]:
    """The cache keys of these accounts' entries (for a caller reading them with other entries)."""
    return [_cache_key(pk) for pk in account_ids]


def credit_states_cached(*, account_ids: Iterable[int], found: dict[str, Any]) -> dict[int, CreditState]:
    """The states among `found` (a cache `get_many` answer) of these accounts."""
    return {
        pk: CreditState.from_cache(found[_cache_key(pk)]) for pk in account_ids if _cache_key(pk) in found
    }


def authorization_for(*, account: Any) -> dict[str, Any]:
    """{"allowed", "reason", "available", "currency"} for `account`, from the cache.

    Reasons, first match wins: the account's own status (on_hold, suspended, closed), then
    `ancestor:<code>` for the nearest-to-root ancestor that is not active or has no credit, then
    `no_credit` when the account's own available credit is <= 0, else `ok`."""
    chain = [*list(account.ancestor_ids or ()), account.pk]  # root-most first, the account last
    found = cache.get_many(credit_cache_keys(account_ids=chain))
    states = credit_states_cached(account_ids=chain, found=found)
    missing = [pk for pk in chain if pk not in states]
    if missing:
        states.update(credit_states_refresh(account_ids=missing))
    return authorization_decide(chain=chain, states=states)


def authorization_decide(*, chain: list[int], states: dict[int, CreditState]) -> dict[str, Any]:
    """authorization_for's answer from the states of `chain` (root-most first, the account last),
    all of which must be present."""
    own = states[chain[-1]]
    reason = "ok"
    if own.status != ACTIVE:
        reason = own.status
    else:
        for pk in chain[:-1]:
            ancestor = states.get(pk)
            if ancestor is not None and (ancestor.status != ACTIVE or ancestor.available <= 0):
                reason = f"ancestor:{ancestor.code}"
                break
        else:
            if own.available <= 0:
                reason = "no_credit"
    return {
        "allowed": reason == "ok",
        "reason": reason,
        "available": own.available,
        "currency": own.currency,
    }
