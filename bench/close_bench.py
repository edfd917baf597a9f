"""The month-end close at scale (issue 5): 10,000 postpaid accounts x 20 models with a month of
daily rollups, closed the way beat runs it (`close_run`, then `drafts_issue_due`: draft, issue,
post), and the same close again after the raw event table has grown tenfold.

Usage: `make bench-close` or `DATABASE_URL=postgres://... .venv/bin/python bench/close_bench.py
[--accounts 10000] [--models 20] [--events-per-account 20]`. It creates its own database
`bench_close_<pid>` on the server of DATABASE_URL (or the embedded server), migrates it, and drops
it at the end.

Seeding is set-based SQL, not the services, so that it takes seconds rather than the hour that
ingesting 12 million rollup rows' worth of events would: accounts are direct postpaid customers of
the root (depth 0, no parent, billed from the book), rollups are written as rating would leave them
(amount = tokens x unit price / 1M, exact; nothing billed yet), and raw events go straight into the
month's partition. The close never reads raw events, so their content only has to be plausible;
they are there to make the table big.

Two books, closed one after the other in the same run (the machine is shared, so both figures come
from the same conditions): book A with `--events-per-account` raw events per account, then book B,
identical rollups, with ten times as many raw events per account added before its close. Target:
the 10,000-account close under 60 s. The last line is `RESULT close_10k <s> s ratio=<60/s>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchdb import admin_execute, server_url, with_database

REPO_DIR = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60.0
MONTH_START = date(2026, 10, 1)
DAYS = 31
# Beat's moment: five past midnight UTC on 1 November; the books have no grace, so the drafts are
# due at once and the issue job of the same night issues them.
NOW = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)
SEED_CHUNK = 1_000


def log(message: str) -> None:
    print(message, flush=True)


def models_create(count: int) -> list[tuple[int, str]]:
    """The provider's models through the services (20 calls): (id, code)."""
    from procurement.services import provider_create, provider_model_create

    provider = provider_create(code="bench-provider", name="Bench provider", currency="USD")
    return [
        (m.pk, m.code)
        for m in (
            provider_model_create(provider=provider, code=f"model-{i:02d}") for i in range(1, count + 1)
        )
    ]


def book_seed(*, code: str, accounts: int, models: list[tuple[int, str]], days: int) -> Any:
    """A book with `accounts` monthly postpaid customers and a month of rollups for each of them:
    every model on `days` days of October (spread over the month), input and output."""
    from django.db import connection

    from ledger.services import book_create

    book = book_create(code=code, name=f"Bench {code}", currency="USD")
    with connection.cursor() as cur:
        # Every tenth customer has a 20,000.00 monthly commitment, above its usage: a shortfall
        # line. Tax 10% on everyone, 30 net days.
        cur.execute(
            """
            INSERT INTO accounts_account
                (code, name, parent_id, kind, currency, terms, net_days, credit_limit, status,
                 tax_rate, commitment, book_id, own_book_id, ancestor_ids, depth, created_at, updated_at)
            SELECT %s || '-c' || lpad(g::text, 5, '0'), 'Customer ' || g, NULL, 'customer', 'USD',
                   'monthly', 30, 1000000000, 'active', 0.1,
                   CASE WHEN g %% 10 = 0 THEN 20000 ELSE 0 END, %s, NULL, '{}', 0, now(), now()
            FROM generate_series(1, %s) AS g
            """,
            [code, book.pk, accounts],
        )
        cur.execute("SELECT min(id), max(id) FROM accounts_account WHERE book_id = %s", [book.pk])
        first_id, last_id = cur.fetchone()
        model_ids = [m[0] for m in models]
        model_codes = [m[1] for m in models]
        for low in range(first_id, last_id + 1, SEED_CHUNK):
            # Prices per 1M tokens: model n costs 0.10 x n in and 0.50 x n out. Token counts vary
            # with account, model and day so that lines differ; all exact at 18 places.
            cur.execute(
                """
                INSERT INTO settlement_usagerollup
                    (payer_account_id, payee_book_id, payee_account_id, model_id, model_code, day,
                     token_class, unit_price, currency, prepaid, price_list_id, tokens, amount, updated_at)
                SELECT a.id, %s, NULL, m.id, m.code, %s::date + d, c.cls, c.mult * m.n, 'USD', false, NULL,
                       t.tokens, t.tokens * c.mult * m.n / 1000000, now()
                FROM accounts_account a
                CROSS JOIN unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS m(id, code, n)
                CROSS JOIN (SELECT (k * 31 / %s) AS d FROM generate_series(0, %s - 1) AS k) AS days
                CROSS JOIN (VALUES ('input', 0.10), ('output', 0.50)) AS c(cls, mult)
                CROSS JOIN LATERAL (
                    SELECT ((a.id * 7 + m.n * 13 + d * 3) %% 997 + 1)::bigint * 10000 AS tokens
                ) t
                WHERE a.book_id = %s AND a.id >= %s AND a.id < %s
                """,
                [book.pk, MONTH_START, model_ids, model_codes, days, days, book.pk, low, low + SEED_CHUNK],
            )
        # Rating writes each payer's postpaid month per model, class and price beside its daily rows
        # (one revision per batch that touched it).
        cur.execute(
            """
            INSERT INTO settlement_usageaccrual
                (payer_account_id, month, model_id, model_code, token_class, unit_price, currency, first_day,
                 tokens, amount, revision, updated_at)
            SELECT payer_account_id, %s, model_id, min(model_code), token_class, unit_price, 'USD', min(day),
                   sum(tokens), sum(amount), count(*), now()
            FROM settlement_usagerollup WHERE payee_book_id = %s
            GROUP BY payer_account_id, model_id, token_class, unit_price
            """,
            [MONTH_START, book.pk],
        )
    return book


def raw_events_add(*, book: Any, per_account: int, models: list[tuple[int, str]], tag: str) -> int:
    """Raw events for every account of the book, spread over October (the close must not read them)."""
    from django.db import connection, transaction

    from settlement.services.partitions import usage_partitions_ensure

    usage_partitions_ensure(months=[MONTH_START])
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO settlement_usageevent
                (account_id, request_id, model_id, model_code, input_tokens, cached_input_tokens,
                 cache_write_tokens, output_tokens, occurred_at, received_at, batch_id, tags)
            SELECT a.id, %s || '-' || a.id || '-' || e,
                   (%s::bigint[])[1 + e %% %s], (%s::text[])[1 + e %% %s],
                   1000 + e, 0, 0, 200 + e,
                   %s::timestamptz + (e * interval '1 second' * (2678399 / %s)),
                   %s::timestamptz, 0, NULL
            FROM accounts_account a CROSS JOIN generate_series(0, %s - 1) AS e
            WHERE a.book_id = %s
            """,
            [
                tag,
                [m[0] for m in models],
                len(models),
                [m[1] for m in models],
                len(models),
                datetime(2026, 10, 1, tzinfo=UTC),
                per_account,
                datetime(2026, 11, 1, tzinfo=UTC),
                per_account,
                book.pk,
            ],
        )
        cur.execute("SELECT count(*) FROM settlement_usageevent")
        (total,) = cur.fetchone()
    with connection.cursor() as cur:
        # Rollups are written over a month in real life and autovacuum has long visited them; fresh
        # from one bulk insert, the close's first read would instead pay for setting every row's
        # hint bits (and the planner would have no statistics).
        for table in (
            "settlement_usagerollup",
            "settlement_usageaccrual",
            "settlement_usageevent",
            "accounts_account",
        ):
            cur.execute(f"VACUUM ANALYZE {table}")
    return int(total)


def close_timed(book: Any) -> dict[str, float]:
    """The nightly chain for one book: the close (drafts), then the issue job (re-derive, number,
    post). Both timed; their sum is the figure."""
    from settlement.services.close import close_run
    from settlement.services.invoicing import drafts_issue_due

    started = time.perf_counter()
    close_run(book=book, now=NOW)
    drafted = time.perf_counter()
    issued = drafts_issue_due(book=book, now=NOW)
    done = time.perf_counter()
    return {
        "draft_s": drafted - started,
        "issue_s": done - drafted,
        "total_s": done - started,
        "issued": float(len(issued)),
    }


def close_checked(book: Any, accounts: int) -> None:
    """What must hold after the close: one issued invoice per account, numbers 1..N without a gap,
    every rollup billed, and a zero trial balance."""
    from django.db.models import Sum

    from ledger.selectors import trial_balance
    from settlement.models import Invoice, InvoiceUsage, UsageRollup

    invoices = Invoice.objects.filter(issuer_book=book)
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in invoices.values_list("number", flat=True) if n)
    problems = []
    if invoices.count() != accounts or invoices.exclude(status="issued").exists():
        problems.append(f"{invoices.count()} invoices for {accounts} accounts")
    if numbers != list(range(1, accounts + 1)):
        problems.append("invoice numbers are not 1..N")
    rated = UsageRollup.objects.filter(payee_book=book).aggregate(tokens=Sum("tokens"), amount=Sum("amount"))
    billed = (
        InvoiceUsage.objects.filter(invoice__issuer_book=book)
        .exclude(invoice__status="draft")
        .aggregate(tokens=Sum("tokens"), amount=Sum("amount"))
    )
    if rated != billed:
        problems.append(f"billed usage {billed} is not the rated usage {rated}")
    if any(row["difference"] != 0 for row in trial_balance(book=book)):
        problems.append("the trial balance is not zero")
    if problems:
        raise SystemExit("close check failed: " + "; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description="Month-end close benchmark.")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--events-per-account", type=int, default=20)
    parser.add_argument(
        "--days", type=int, default=DAYS, help="days of October each account uses each model (1-31)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (for profiling)")
    args = parser.parse_args()

    server = server_url()
    db = f"bench_close_{os.getpid()}"
    admin_execute(server, f'CREATE DATABASE "{db}"')
    try:
        os.environ["DATABASE_URL"] = with_database(server, db)
        os.environ["DJANGO_SETTINGS_MODULE"] = "distributor.settings"
        sys.path.insert(0, str(REPO_DIR))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        log(f"database {db}: {args.accounts} accounts x {args.models} models x {args.days} days x 2 classes")
        models = models_create(args.models)
        rows = args.accounts * args.models * args.days * 2

        results = {}
        for code, per_account in (
            ("bench-a", args.events_per_account),
            ("bench-b", args.events_per_account * 10),
        ):
            started = time.perf_counter()
            book = book_seed(code=code, accounts=args.accounts, models=models, days=args.days)
            events = raw_events_add(book=book, per_account=per_account, models=models, tag=code)
            log(
                f"{code}: seeded {rows:,} rollup rows, {per_account} raw events per account "
                f"({events:,} in the table) in {time.perf_counter() - started:.1f} s"
            )
            figures = close_timed(book)
            close_checked(book, args.accounts)
            results[code] = figures
            log(
                f"{code}: close {figures['total_s']:.1f} s (drafts {figures['draft_s']:.1f} s, "
                f"issue + posting {figures['issue_s']:.1f} s), "
                f"{args.accounts / figures['total_s']:.0f} invoices/s, {events:,} raw events in the table"
            )
        a, b = results["bench-a"]["total_s"], results["bench-b"]["total_s"]
        log(f"10x raw events per account: {b:.1f} s against {a:.1f} s (x{b / a:.2f})")
        from django.db import connections

        connections.close_all()
    finally:
        if not args.keep:
            admin_execute(server, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(f"RESULT close_10k {a:.1f} s ratio={TARGET_SECONDS / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
