"""The public scenario's October (shared/scenarios/october-2026.yaml), built through the real
services, for the close, invoicing, payment, credit-note and statement tests. No tests here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import factory

from settlement.services import usage_ingest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
D = Decimal


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class World:
    book: Any
    alpha: Any
    beta: Any
    acme: Any
    devsolo: Any
    models: dict[str, Any]

    def refresh(self) -> None:
        for account in (self.alpha, self.beta, self.acme, self.devsolo):
            account.refresh_from_db()


class UsageFactory(factory.DictFactory):
    """One gateway event for acme (the scenario's big customer)."""

    request_id = factory.Sequence(lambda n: f"evt-{n}")
    account = "acme"
    model = "minimax-m2.5"
    input_tokens = 0
    output_tokens = 0
    occurred_at = "2026-10-15T10:00:00Z"


def world_build(*, grace_days: int = 0, timezone: str = "UTC", acme_commitment: Decimal = D(0)) -> World:
    from accounts.services import account_create, price_list_set, topup_record
    from ledger.services import book_create
    from procurement.services import (
        list_price_set,
        provider_create,
        provider_model_create,
        quota_purchase_record,
    )

    book = book_create(
        code="platform", name="Platform Ltd", currency="USD", timezone=timezone, grace_days=grace_days
    )
    models: dict[str, Any] = {}
    for provider_code, model_code, prices in (
        ("minimax", "minimax-m2.5", {"input": "0.30", "cached_input": "0.03", "output": "1.10"}),
        ("zhipu", "glm-5", {"input": "0.30", "cached_input": "0.06", "output": "2.55"}),
        (
            "anthropic",
            "claude-opus-4.6",
            {"input": "5.00", "cached_input": "0.50", "cache_write": "6.25", "output": "25.00"},
        ),
    ):
        provider = provider_create(code=provider_code, name=provider_code.title(), currency="USD")
        model = provider_model_create(provider=provider, code=model_code)
        list_price_set(model=model, effective_from=T0, prices={k: D(v) for k, v in prices.items()})
        models[model_code] = model
        if provider_code == "minimax":
            quota_purchase_record(
                book=book,
                provider=provider,
                paid=D("9000.00"),
                credit=D("10000.00"),
                currency="USD",
                purchased_at=utc("2026-09-25T00:00:00Z"),
            )
    common = {"root_book": book, "currency": "USD"}
    alpha = account_create(
        **common,
        code="alpha",
        name="Alpha Reseller",
        kind="distributor",
        terms="monthly",
        credit_limit=D(50000),
    )
    beta = account_create(
        **common,
        code="beta",
        name="Beta Cloud",
        parent=alpha,
        kind="distributor",
        terms="monthly",
        credit_limit=D(20000),
    )
    acme = account_create(
        **common,
        code="acme",
        name="Acme Corp",
        parent=beta,
        kind="customer",
        terms="monthly",
        net_days=15,
        credit_limit=D(10000),
        tax_rate=D("0.06"),
        commitment=acme_commitment,
    )
    devsolo = account_create(**common, code="devsolo", name="Dev Solo", kind="customer", terms="prepaid")
    price_list_set(
        account=alpha,
        effective_from=T0,
        rule="discount",
        rate=D("0.08"),
        overrides={"claude-opus-4.6": {"input": D("4.80")}},
    )
    price_list_set(account=beta, effective_from=T0, rule="discount", rate=D("0.04"))
    price_list_set(account=acme, effective_from=T0, rule="discount", rate=D("0"))
    price_list_set(account=devsolo, effective_from=T0, rule="markup", rate=D("0.055"))
    topup_record(account=devsolo, amount=D("100.00"), at=utc("2026-10-01T00:00:00Z"), reference="CARD-0001")
    world = World(book=book, alpha=alpha, beta=beta, acme=acme, devsolo=devsolo, models=models)
    world.refresh()
    return world


def ingest(events: list[dict[str, Any]], received_at: datetime) -> None:
    result = usage_ingest(events=events, service=True, received_at=received_at)
    assert result.rejected == 0, result.rejections


def october_usage(world: World, *, devsolo_calls: int = 1000) -> None:
    """acme's two calls (one replayed), devsolo's batch of glm-5 calls, acme's workshop charge."""
    from settlement.services.invoicing import manual_charge_record

    acme_1 = UsageFactory(request_id="acme-1", input_tokens=2_000_000_000, output_tokens=500_000_000)
    ingest([acme_1], utc("2026-10-15T10:00:00Z"))
    ingest([acme_1], utc("2026-10-15T10:05:00Z"))
    ingest(
        [
            UsageFactory(
                request_id="acme-2",
                model="claude-opus-4.6",
                input_tokens=10_000_000,
                output_tokens=2_000_000,
                occurred_at="2026-10-16T09:00:00Z",
            )
        ],
        utc("2026-10-16T09:00:00Z"),
    )
    start = utc("2026-10-02T00:00:00Z")
    step = (utc("2026-10-30T00:00:00Z") - start) / devsolo_calls
    ingest(
        [
            {
                "request_id": f"devsolo-{i}",
                "account": "devsolo",
                "model": "glm-5",
                "input_tokens": 40_000 * 1000 // devsolo_calls,
                "output_tokens": 10_000 * 1000 // devsolo_calls,
                "occurred_at": (start + step * i).isoformat(),
            }
            for i in range(devsolo_calls)
        ],
        utc("2026-10-30T00:00:00Z"),
    )
    manual_charge_record(
        account=world.acme,
        description="Prompt engineering workshop",
        amount=D("500.00"),
        at=utc("2026-10-20T00:00:00Z"),
    )


def lines_of(invoice: Any) -> list[tuple[Any, ...]]:
    """(model or description, class, tokens, unit price, amount, late) per printed line."""
    return [
        (
            ln.model_code or ln.description,
            ln.token_class,
            ln.tokens,
            None if ln.unit_price is None else ln.unit_price.normalize(),
            ln.amount,
            ln.late,
        )
        for ln in invoice.lines.order_by("position")
    ]


def one_day(days: int = 1) -> timedelta:
    return timedelta(days=days)
