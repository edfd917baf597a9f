"""Exposure (§9, §11.6, §11.7): the public scenario's figures per book as of the report time, as of
earlier moments, per provider and per customer, DSO, and the daily snapshots.

`risk_world` is the whole public scenario up to its month-end provisioning, built through the real
services; the aging, provisioning and write-off tests use it too."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from ledger.models import JournalEntry
from settlement.models import ExposureSnapshot
from settlement.risk_selectors import dso, exposure, exposure_history
from settlement.services.payments import payment_record
from settlement.services.provisioning import exposure_snapshots_take_all
from tests.settlement.test_close_world import D, World, october_usage, utc, world_build
from tests.settlement.test_invoicing import issue_all

REPORT_AT = utc("2026-12-31T23:59:59Z")
PROVISION_AT = utc("2026-12-31T23:00:00Z")
# The scenario's matrix (october-2026.yaml).
MATRIX = {
    "current": D("0.005"),
    "1-30": D("0.02"),
    "31-60": D("0.05"),
    "61-90": D("0.15"),
    "91-180": D("0.40"),
    "180+": D("1.00"),
}


def zhipu_buy(world: World) -> None:
    """The scenario's second purchase (test_close_world buys only minimax's)."""
    from procurement.services import quota_purchase_record

    quota_purchase_record(
        book=world.book,
        provider=world.models["glm-5"].provider,
        paid=D("1000.00"),
        credit=D("1000.00"),
        currency="USD",
        purchased_at=utc("2026-09-25T00:00:00Z"),
    )


def pay(account: object, amount: str, reference: str, at: str) -> None:
    payment_record(
        account=account, amount=D(amount), currency="USD", received_at=utc(at), reference=reference
    )


def scenario_payments(world: World) -> None:
    pay(world.acme, "1855.00", "ACME-WIRE-1", "2026-11-10T00:00:00Z")
    pay(world.beta, "1200.00", "BETA-WIRE-1", "2026-12-05T00:00:00Z")
    pay(world.alpha, "500.00", "ALPHA-WIRE-1", "2026-12-10T00:00:00Z")


def risk_world_build(*, timezone: str = "UTC", payments: bool = True) -> World:
    """October's usage (devsolo's 1,000 calls folded into 10 of the same total tokens), the close
    and issue on 1 November, and (unless told otherwise) the three payments."""
    world = world_build(timezone=timezone)
    zhipu_buy(world)
    october_usage(world, devsolo_calls=10)
    issue_all(world)
    if payments:
        scenario_payments(world)
    world.refresh()
    return world


@pytest.fixture
def risk_world(db: None) -> World:
    return risk_world_build()


def figures(book: object, at: datetime = REPORT_AT) -> dict[str, Decimal]:
    e = exposure(book=book, currency="USD", as_of=at)  # type: ignore[arg-type]
    return {
        name: getattr(e, name)
        for name in (
            "upstream_prepaid",
            "unbilled",
            "receivables",
            "gross",
            "customer_deposits",
            "upstream_payables",
            "net",
        )
    }


def test_the_public_scenario_exposure_of_every_book(risk_world: World) -> None:
    w = risk_world
    # Root: minimax 9000 paid for 10000 credit, 1150 list drawn at 0.9 = 1035 -> 7965 left; zhipu
    # 1000 for 1000, devsolo's 40M in x 0.30 + 10M out x 2.55 = 37.50 drawn -> 962.50 left.
    # Receivables: alpha's 1152 - 500 = 652. Deposits: devsolo 100 - 37.50 x 1.055 = 60.4375.
    # Payables: anthropic has no quota, acme's opus calls accrue at list 50 + 50 = 100.
    assert figures(w.book) == {
        "upstream_prepaid": D("8927.50"),
        "unbilled": D(0),
        "receivables": D("652.00"),
        "gross": D("9579.50"),  # 8927.50 + 0 + 652
        "customer_deposits": D("60.4375"),
        "upstream_payables": D("100.00"),
        "net": D("9419.0625"),  # 9579.50 - 60.4375 - 100
    }
    # alpha's book (§11.7): beta paid it in full; it still owes the root 652.
    assert figures(w.alpha.own_book) == {
        "upstream_prepaid": D(0),
        "unbilled": D(0),
        "receivables": D(0),
        "gross": D(0),
        "customer_deposits": D(0),
        "upstream_payables": D("652.00"),
        "net": D("-652.00"),
    }
    assert set(figures(w.beta.own_book).values()) == {D(0)}


def test_per_provider_and_top_customers_of_the_root(risk_world: World) -> None:
    e = exposure(book=risk_world.book, currency="USD", as_of=REPORT_AT)
    by_provider = {p.provider: (p.prepaid, p.payables) for p in e.per_provider}
    assert by_provider == {
        "anthropic": (D(0), D("100.00")),
        "minimax": (D("7965.00"), D(0)),
        "zhipu": (D("962.50"), D(0)),
    }
    # No usage in the 7 days before the report: no burn, so no days of cover to show.
    assert {p.days_of_cover for p in e.per_provider} == {None}
    # alpha (652 owed) ranks above devsolo (nothing owed, 60.4375 on deposit).
    assert [(c.account, c.unbilled, c.receivables, c.deposits) for c in e.top_customers] == [
        ("alpha", D(0), D("652.00"), D(0)),
        ("devsolo", D(0), D(0), D("60.4375")),
    ]
    # alpha's book lists its one supplier, the root.
    upstream = exposure(book=risk_world.alpha.own_book, currency="USD", as_of=REPORT_AT).per_provider
    assert [(p.provider, p.prepaid, p.payables) for p in upstream] == [("book:platform", D(0), D("652.00"))]


def test_exposure_as_of_an_earlier_moment_reads_the_ledger_then(risk_world: World) -> None:
    w = risk_world
    # 5 November: every invoice issued, nothing paid yet.
    at = utc("2026-11-05T00:00:00Z")
    root = figures(w.book, at)
    assert (root["receivables"], root["upstream_payables"]) == (D("1152.00"), D("100.00"))
    alpha = figures(w.alpha.own_book, at)
    # alpha is owed 1200 by beta and owes the root 1152: net 48, its margin.
    assert (alpha["receivables"], alpha["upstream_payables"], alpha["net"]) == (D(1200), D(1152), D(48))
    beta = figures(w.beta.own_book, at)
    assert (beta["receivables"], beta["upstream_payables"], beta["net"]) == (D(1855), D(1200), D(655))


def test_unbilled_usage_counts_until_the_invoice_is_issued(db: None) -> None:
    """§11.6 and §11.7: before the issue, each hop's usage is unbilled in its parent's book and an
    accrued payable in its own."""
    w = world_build()
    zhipu_buy(w)
    october_usage(w, devsolo_calls=10)
    at = utc("2026-10-31T23:00:00Z")
    # alpha at its price: 2000M x 0.276 + 500M x 1.012 + 10M x 4.80 + 2M x 23 = 552 + 506 + 48 + 46.
    assert figures(w.book, at)["unbilled"] == D("1152")
    alpha = figures(w.alpha.own_book, at)
    # beta at its price: 576 + 528 + 48 + 48 = 1200; alpha's own accrued usage 1152 is its payable.
    assert (alpha["unbilled"], alpha["upstream_payables"], alpha["net"]) == (D(1200), D(1152), D(48))
    beta = figures(w.beta.own_book, at)
    # acme's usage at list: 600 + 550 + 50 + 50 = 1250 (the workshop is a pending charge, not unbilled).
    assert (beta["unbilled"], beta["upstream_payables"]) == (D(1250), D(1200))


def test_a_credit_balance_at_the_parent_is_the_distributors_upstream_prepayment(risk_world: World) -> None:
    w = risk_world
    # alpha pays 752 for the 652 it owes: 100 is a credit balance, a deposit in the root's book.
    pay(w.alpha, "752.00", "ALPHA-WIRE-2", "2026-12-20T00:00:00Z")
    root = figures(w.book)
    assert (root["receivables"], root["customer_deposits"]) == (D(0), D("160.4375"))
    alpha = figures(w.alpha.own_book)
    assert (alpha["upstream_prepaid"], alpha["upstream_payables"], alpha["net"]) == (D(100), D(0), D(100))


def test_dso_trailing_90_days(risk_world: World) -> None:
    # 652 outstanding against 1152 invoiced on 1 November: 652 x 90 / 1152 = 50.9375 -> 50.94 days.
    assert dso(book=risk_world.book, currency="USD", as_of=REPORT_AT) == D("50.94")
    # Nothing invoiced in the 90 days before October's end: no DSO.
    assert dso(book=risk_world.book, currency="USD", as_of=utc("2026-10-31T00:00:00Z")) is None


def test_the_daily_snapshot_keeps_one_row_per_book_and_day(risk_world: World) -> None:
    w = risk_world
    now = utc("2027-01-01T00:20:00Z")
    assert exposure_snapshots_take_all(now=now) == 3  # platform, alpha, beta in USD
    entries = JournalEntry.objects.count()
    assert exposure_snapshots_take_all(now=now) == 3
    assert ExposureSnapshot.objects.count() == 3 and JournalEntry.objects.count() == entries
    rows = list(exposure_history(book=w.book, currency="USD", since=utc("2026-12-01T00:00:00Z"), until=now))
    assert len(rows) == 1
    snap = rows[0]
    # The end of 31 December: the report's figures.
    assert snap.day.isoformat() == "2026-12-31"
    assert (snap.gross, snap.net, snap.receivables) == (D("9579.50"), D("9419.0625"), D("652.00"))
