"""Ingestion throughput: events/s through `usage_ingest` with 10,000-event batches.

Usage: `DATABASE_URL=postgres://... .venv/bin/python bench/ingest_bench.py [--batches 5] [--accounts 200]`
(the database must be migrated). It builds a throwaway book with one provider, one model and N
postpaid customers under a distributor (two cascade hops per event), then times fresh batches and
one replay. Baseline: COPY -> staging -> INSERT ... ON CONFLICT plus one rollup upsert per batch,
~47,000 rows/s on the project's machine kind (performance-notes.md).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "distributor.settings")

import django

django.setup()

from accounts.services import account_create, price_list_set  # noqa: E402
from ledger.services import book_create  # noqa: E402
from procurement.services import list_price_set, provider_create, provider_model_create  # noqa: E402
from settlement.services import usage_ingest  # noqa: E402

BASELINE_EVENTS_PER_SECOND = 47_000
BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()

    tag = f"bench{int(time.time())}"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    book = book_create(code=tag, name="Bench Ltd", currency="USD")
    provider = provider_create(code=f"{tag}-p", name="Bench provider", currency="USD")
    model = provider_model_create(provider=provider, code=f"{tag}-m")
    list_price_set(
        model=model,
        effective_from=start,
        prices={"input": Decimal("0.30"), "cached_input": Decimal("0.03"), "output": Decimal("1.10")},
    )
    reseller = account_create(
        root_book=book, code=f"{tag}-r", name="Reseller", kind="distributor", currency="USD", terms="monthly"
    )
    price_list_set(account=reseller, effective_from=start, rule="discount", rate=Decimal("0.1"))
    codes = []
    for i in range(args.accounts):
        customer = account_create(
            root_book=book,
            code=f"{tag}-c{i}",
            name=f"Customer {i}",
            parent=reseller,
            kind="customer",
            currency="USD",
            terms="monthly",
            credit_limit=Decimal("1000000"),
        )
        price_list_set(account=customer, effective_from=start, rule="markup", rate=Decimal("0.05"))
        codes.append(customer.code)

    rng = random.Random(7)
    received = datetime(2026, 3, 2, tzinfo=UTC)

    def batch(n: int) -> list[dict[str, object]]:
        return [
            {
                "request_id": f"{n}-{i}",
                "account": rng.choice(codes),
                "model": model.code,
                "input_tokens": rng.randint(100, 50_000),
                "cached_input_tokens": rng.randint(0, 5_000),
                "output_tokens": rng.randint(10, 5_000),
                "occurred_at": (received - timedelta(seconds=rng.randint(0, 86_400))).isoformat(),
            }
            for i in range(BATCH)
        ]

    batches = [batch(n) for n in range(args.batches)]
    elapsed = 0.0
    for events in batches:
        t0 = time.perf_counter()
        result = usage_ingest(events=events, service=True, received_at=received)
        elapsed += time.perf_counter() - t0
        assert result.accepted == BATCH, result.rejections[:3]
    rate = args.batches * BATCH / elapsed
    t0 = time.perf_counter()
    replay = usage_ingest(events=batches[0], service=True, received_at=received)
    replay_rate = BATCH / (time.perf_counter() - t0)
    assert replay.duplicates == BATCH
    print(f"usage_ingest: {rate:,.0f} events/s ({rate / BASELINE_EVENTS_PER_SECOND:.2f}x baseline)")
    print(f"replay of a batch: {replay_rate:,.0f} events/s")


if __name__ == "__main__":
    main()
