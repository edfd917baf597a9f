"""The hordak side of the ledger benchmark: run with bench/.venv-hordak/bin/python.

Posts the workload of bench/workload.py through django-hordak 2.0's public API
(`Account.transfer_to`, batches of 1,000 inside `transaction.atomic`, like our close), reads
customer balances with `Account.get_balance()`, and prints one JSON object on stdout. Progress goes
to stderr. Customers are hordak child accounts under Receivables and Revenue: hordak has no
counterparty dimension, and a sub-account per customer is how its documentation models one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from typing import Any

import workload

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hordak_project.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from hordak.models import Account, AccountType  # noqa: E402
from moneyed import Money  # noqa: E402


def log(message: str) -> None:
    print(f"  [hordak] {message}", file=sys.stderr, flush=True)


def chart_create() -> tuple[list[Any], list[Any]]:
    """Receivables and Revenue, each with one child account per customer."""
    with transaction.atomic():
        receivables = Account.objects.create(
            name="Receivables", code="1", type=AccountType.asset, currencies=[workload.CURRENCY]
        )
        revenue = Account.objects.create(
            name="Revenue", code="4", type=AccountType.income, currencies=[workload.CURRENCY]
        )
        owed = [
            Account.objects.create(
                name=f"Receivable c{n:04d}",
                code=f"{n:04d}",
                parent=receivables,
                currencies=[workload.CURRENCY],
            )
            for n in range(workload.COUNTERPARTIES)
        ]
        earned = [
            Account.objects.create(
                name=f"Revenue c{n:04d}", code=f"{n:04d}", parent=revenue, currencies=[workload.CURRENCY]
            )
            for n in range(workload.COUNTERPARTIES)
        ]
    return owed, earned


def balances_read(accounts: list[Any], expected: list[Decimal]) -> dict[str, Any]:
    """Read every customer's receivable through hordak's balance API and check it; best of
    READ_REPEATS timings."""
    timings = []
    for _ in range(workload.READ_REPEATS):
        started = time.perf_counter()
        read = [account.get_balance()[workload.CURRENCY].amount for account in accounts[: workload.READS]]
        timings.append(time.perf_counter() - started)
    seconds = min(timings)
    wrong = sum(1 for got, want in zip(read, expected, strict=False) if got != want)
    return {"reads": len(read), "seconds": seconds, "reads_per_s": len(read) / seconds, "wrong": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=workload.ENTRIES)
    parser.add_argument("--batch", type=int, default=workload.BATCH)
    # A safety net for slow machines: past this much posting time the run stops at the next batch
    # boundary and reports the sample it posted (the output says how many entries that was).
    parser.add_argument("--max-post-seconds", type=float, default=300.0)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    owed, earned = chart_create()
    log(f"chart ready: {len(owed) + len(earned)} customer accounts")

    start = datetime(2026, 10, 1, tzinfo=UTC)
    post_seconds = 0.0
    checkpoint: dict[str, Any] | None = None
    posted = 0
    for first in range(0, args.entries, args.batch):
        if post_seconds > args.max_post_seconds:
            log(f"time budget spent: stopping at a sample of {posted} entries")
            break
        last = min(first + args.batch, args.entries)
        batch_started = time.perf_counter()
        with transaction.atomic():
            for i in range(first, last):
                n = workload.customer_index(i)
                # transfer_to credits self and debits the target: revenue Cr, receivable Dr.
                earned[n].transfer_to(
                    owed[n],
                    Money(workload.entry_amount(i), workload.CURRENCY),
                    date=(start + timedelta(seconds=i)).date(),
                    description="usage",
                )
        post_seconds += time.perf_counter() - batch_started
        posted = last
        if last == workload.CHECKPOINT:
            checkpoint = balances_read(owed, workload.expected_receivables(last))
            log(f"{last} entries, {last / post_seconds:,.0f}/s; reads {checkpoint['reads_per_s']:,.0f}/s")
        elif last % 20_000 == 0:
            log(f"{last} entries, {last / post_seconds:,.0f}/s")

    final = balances_read(owed, workload.expected_receivables(posted))
    print(
        json.dumps(
            {
                "library": "django-hordak " + metadata.version("django-hordak"),
                "entries": posted,
                "entries_asked": args.entries,
                "batch": args.batch,
                "post_seconds": post_seconds,
                "entries_per_s": posted / post_seconds,
                "reads_checkpoint": checkpoint,
                "reads_final": final,
            }
        )
    )


if __name__ == "__main__":
    main()
