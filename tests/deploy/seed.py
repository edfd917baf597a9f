"""Seeds the end-to-end test's deployment through the services (tests/deploy/test_processes.py runs
it as `python -m tests.deploy.seed` against the throwaway database) and prints the API keys as JSON.

The world: the root book `platform` (USD, UTC, grace 0) resells minimax-m2.5 (list 0.30 input,
1.10 output per 1M tokens) to the distributor `alpha` at list - 10%, and alpha to its customer
`acme` at list with 6% tax. Prices and a quota purchase start well before the month being billed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal


def month_start_before(now: datetime) -> datetime:
    """The first instant of the previous calendar month (UTC)."""
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (this_month - timedelta(days=1)).replace(day=1)


def seed() -> dict[str, str]:
    from accounts.services import account_create, api_key_create, price_list_set
    from ledger.services import book_create
    from procurement.services import (
        list_price_set,
        provider_create,
        provider_model_create,
        quota_purchase_record,
    )

    since = month_start_before(datetime.now(UTC)) - timedelta(days=40)
    book = book_create(code="platform", name="Platform Ltd", currency="USD", timezone="UTC", grace_days=0)
    provider = provider_create(code="minimax", name="MiniMax", currency="USD")
    model = provider_model_create(provider=provider, code="minimax-m2.5")
    list_price_set(
        model=model, effective_from=since, prices={"input": Decimal("0.30"), "output": Decimal("1.10")}
    )
    quota_purchase_record(
        book=book,
        provider=provider,
        paid=Decimal("900.00"),
        credit=Decimal("1000.00"),
        currency="USD",
        purchased_at=since,
        reference="MM-E2E-1",
    )
    alpha = account_create(
        root_book=book,
        code="alpha",
        name="Alpha Reseller",
        kind="distributor",
        currency="USD",
        terms="monthly",
        credit_limit=Decimal(50000),
    )
    acme = account_create(
        root_book=book,
        code="acme",
        name="Acme Corp",
        parent=alpha,
        kind="customer",
        currency="USD",
        terms="monthly",
        net_days=15,
        credit_limit=Decimal(10000),
        tax_rate=Decimal("0.06"),
    )
    price_list_set(account=alpha, effective_from=since, rule="discount", rate=Decimal("0.10"))
    price_list_set(account=acme, effective_from=since, rule="discount", rate=Decimal(0))
    _, alpha_secret = api_key_create(account=alpha, scopes=["usage", "read"], name="alpha gateway")
    _, acme_secret = api_key_create(account=acme, scopes=["read"], name="acme portal")
    return {"alpha": alpha_secret, "acme": acme_secret}


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")
    django.setup()
    print(json.dumps(seed()))
