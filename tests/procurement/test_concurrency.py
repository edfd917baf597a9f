"""Parallel drawers on real connections never draw the same credit twice (§3, conventions 8, 11)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from procurement.models import QuotaDraw, QuotaPurchase, UpstreamCharge
from procurement.services import UpstreamCost, quota_purchase_record, upstream_cost_draw
from tests.procurement.factories import BookFactory, ProviderFactory, at, balance

THREADS = 6
CALLS = 10


@pytest.mark.django_db(transaction=True)
def test_six_parallel_drawers_never_exceed_the_credit() -> None:
    """Two purchases, 400 + 600 = 1000 credit at 0.8 and 0.9. Six threads each draw 10 x 30 = 300 at
    list (1800 asked) and all race on one shared key. Exactly 1000 is drawn, 800 + 30 (the shared key,
    once) accrues, and cost = 400 x 0.8 + 600 x 0.9 + 830 = 320 + 540 + 830 = 1690."""
    book = BookFactory()
    vendor = ProviderFactory()
    for paid, credit, day in (("320.00", "400", "01"), ("540.00", "600", "02")):
        quota_purchase_record(
            book=book,
            provider=vendor,
            paid=Decimal(paid),
            credit=Decimal(credit),
            currency="USD",
            purchased_at=at(f"2026-10-{day}T00:00:00"),
        )
    when = at("2026-10-15T00:00:00")
    barrier = threading.Barrier(THREADS)
    results: list[UpstreamCost] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait()
            mine = [
                upstream_cost_draw(
                    book=book,
                    provider=vendor,
                    list_charge=Decimal("30"),
                    currency="USD",
                    at=when,
                    idempotency_key=key,
                )
                for key in ["shared", *(f"t{n}-{i}" for i in range(CALLS))]
            ]
            with lock:
                results.extend(mine)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert UpstreamCharge.objects.count() == 1 + THREADS * CALLS
    assert sum(1 for r in results if not r.replayed) == 1 + THREADS * CALLS
    assert QuotaDraw.objects.aggregate(s=Sum("list_amount"))["s"] == Decimal("1000")
    assert all(p.remaining_credit == 0 for p in QuotaPurchase.objects.all())
    charges = UpstreamCharge.objects.aggregate(d=Sum("drawn_list"), a=Sum("accrued_list"), c=Sum("cost"))
    assert charges["d"] + charges["a"] == Decimal("1830")  # every list amount asked, counted once
    assert charges["c"] == Decimal("1690")
    assert balance(book, "cost_of_sales") == Decimal("1690")
    assert balance(book, "upstream_prepayments") == Decimal(0)
    assert balance(book, "upstream_payables") == Decimal("830")
