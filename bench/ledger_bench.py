"""Ledger posting benchmark (issue 2): our `ledger.services.entries_post` against django-hordak 2.0.

    make bench-ledger            (or: .venv/bin/python bench/ledger_bench.py [--entries N])

Both ledgers run the workload of bench/workload.py: 100,000 two-leg usage entries (receivables Dr,
revenue Cr) over 1,000 customers, 1,000 entries per database transaction as the close posts them,
then 1,000 customer balance reads, timed after 10,000 entries and again at the end to show whether
a read slows down as the ledger grows. Every balance read is checked against the hand-summed figure.

Each side gets a fresh database on the server of DATABASE_URL (or the project's embedded
PostgreSQL when it is unset), dropped at the end. django-hordak is never a project dependency: it
lives in bench/.venv-hordak, built here on first use, and runs as a subprocess that prints JSON.

The last line is the figure CI and the README quote:
    RESULT ledger_posting <ours> entries/s ratio=<ours/hordak>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import workload
from benchdb import admin_execute, server_url, with_database

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HORDAK_VENV = BENCH_DIR / ".venv-hordak"
HORDAK_PYTHON = HORDAK_VENV / "bin" / "python"
HORDAK_REQUIREMENTS = BENCH_DIR / "hordak_project" / "requirements.txt"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the database server and the run's own databases -------------------------------------------


# --- the hordak virtualenv -----------------------------------------------------------------------


def hordak_venv_ensure() -> None:
    """Build bench/.venv-hordak once per version of its requirements file (like the Makefile stamp)."""
    digest = hashlib.sha256(HORDAK_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    stamp = HORDAK_VENV / f".installed-{digest}"
    if stamp.exists() and HORDAK_PYTHON.exists():
        return
    log(f"building {HORDAK_VENV.relative_to(REPO_DIR)} (first use; about 20 s)")
    if not HORDAK_PYTHON.exists():
        # The system interpreter, not this venv's: the hordak venv must not inherit our packages.
        base = getattr(sys, "_base_executable", None) or "python3"
        subprocess.run([base, "-m", "venv", str(HORDAK_VENV)], check=True)
    subprocess.run(
        [str(HORDAK_PYTHON), "-m", "pip", "install", "-q", "-r", str(HORDAK_REQUIREMENTS)], check=True
    )
    for old in HORDAK_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


# --- our ledger ----------------------------------------------------------------------------------


def balance_row_read(*, book: Any, account_code: str, currency: str, counterparty: str = "") -> Decimal:
    """The balance as one AccountBalance row found through its unique (account, counterparty,
    currency) index: the floor any balance selector can reach through the ORM. Debit-normal sign,
    which is right for receivables, the only account read here."""
    from ledger.models import AccountBalance

    row = (
        AccountBalance.objects.filter(
            ledger_account__book=book,
            ledger_account__code=account_code,
            currency=currency,
            counterparty=counterparty,
        )
        .values_list("debits", "credits")
        .first()
    )
    return Decimal(0) if row is None else row[0] - row[1]


def balance_readers() -> dict[str, Callable[..., Decimal]]:
    """What is timed: the ledger selector (the figure reported), and the bare row read beside it
    so that a slow selector shows up as the selector's cost, not the design's."""
    from ledger import selectors

    readers: dict[str, Callable[..., Decimal]] = {}
    selector = getattr(selectors, "account_balance", None)
    if selector is not None:
        readers["selector"] = selector
    readers["row"] = balance_row_read
    return readers


def as_amount(value: Any) -> Decimal:
    """The selector may return a Decimal or a money object with an `amount`."""
    return value if isinstance(value, Decimal) else Decimal(value.amount)


def ours_balances_read(book: Any, reader: Callable[..., Decimal], posted: int) -> dict[str, Any]:
    """Read every customer's receivable and check it against the hand-summed figure; the best of
    READ_REPEATS timings is kept (the machine is shared)."""
    expected = workload.expected_receivables(posted)
    timings = []
    for _ in range(workload.READ_REPEATS):
        started = time.perf_counter()
        read = [
            reader(
                book=book,
                account_code="receivables",
                currency=workload.CURRENCY,
                counterparty=f"account:c{n:04d}",
            )
            for n in range(workload.READS)
        ]
        timings.append(time.perf_counter() - started)
    seconds = min(timings)
    wrong = sum(1 for got, want in zip(read, expected, strict=False) if as_amount(got) != want)
    return {"reads": len(read), "seconds": seconds, "reads_per_s": len(read) / seconds, "wrong": wrong}


def ours_run(*, entries: int, batch: int) -> dict[str, Any]:
    from django.core.management import call_command

    # Only the ledger's tables: the benchmark needs nothing else, and this keeps it independent
    # of migrations other apps may be in the middle of changing.
    call_command("migrate", "ledger", verbosity=0)

    from ledger.services import EntryDraft, book_create, credit, debit, entries_post

    readers = balance_readers()
    book = book_create(code="BENCH", name="Benchmark distributor", currency=workload.CURRENCY)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    post_seconds = 0.0
    checkpoint: dict[str, dict[str, Any]] = {}
    for first in range(0, entries, batch):
        last = min(first + batch, entries)
        batch_started = time.perf_counter()
        # Building the drafts is timed too: hordak's side builds its Money objects in its loop.
        drafts = []
        for i in range(first, last):
            amount = workload.entry_amount(i)
            customer = f"account:c{workload.customer_index(i):04d}"
            drafts.append(
                EntryDraft(
                    idempotency_key=f"bench:usage:{i}",
                    occurred_at=start + timedelta(seconds=i),
                    legs=(
                        debit("receivables", amount, workload.CURRENCY, counterparty=customer),
                        credit("revenue", amount, workload.CURRENCY, counterparty=customer),
                    ),
                    description="usage",
                    source_type="bench",
                    source_id=str(i),
                )
            )
        entries_post(book=book, drafts=drafts)
        post_seconds += time.perf_counter() - batch_started
        if last == workload.CHECKPOINT:
            checkpoint = {name: ours_balances_read(book, read, last) for name, read in readers.items()}
            rates = ", ".join(f"{name} {r['reads_per_s']:,.0f}/s" for name, r in checkpoint.items())
            log(f"  [ours] {last} entries, {last / post_seconds:,.0f}/s; reads: {rates}")
        elif last % 20_000 == 0:
            log(f"  [ours] {last} entries, {last / post_seconds:,.0f}/s")
    final = {name: ours_balances_read(book, read, entries) for name, read in readers.items()}
    # The reported read is the selector's; before the ledger had one, the row read stood in.
    main_reader = "selector" if "selector" in readers else "row"
    return {
        "library": "distributor ledger (entries_post)",
        "reader": main_reader,
        "entries": entries,
        "batch": batch,
        "post_seconds": post_seconds,
        "entries_per_s": entries / post_seconds,
        "reads_checkpoint": checkpoint[main_reader],
        "reads_final": final[main_reader],
        "row_reads_checkpoint": checkpoint["row"],
        "row_reads_final": final["row"],
    }


def hordak_run(*, database_url: str, entries: int, batch: int, max_post_seconds: float) -> dict[str, Any]:
    env = {**os.environ, "HORDAK_BENCH_DATABASE_URL": database_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [
            str(HORDAK_PYTHON),
            str(BENCH_DIR / "hordak_bench.py"),
            f"--entries={entries}",
            f"--batch={batch}",
            f"--max-post-seconds={max_post_seconds}",
        ],
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the report ----------------------------------------------------------------------------------


def report(ours: dict[str, Any], hordak: dict[str, Any] | None) -> None:
    print()
    print(f"ledger benchmark: {ours['entries']:,} two-leg entries, {ours['batch']:,} per transaction,")
    print(
        f"{workload.COUNTERPARTIES:,} customers (receivables Dr / revenue Cr), {workload.READS:,} balance reads "
        f"(best of {workload.READ_REPEATS})"
    )
    read_name = {
        "selector": "ledger.selectors.account_balance",
        "row": "one AccountBalance row (no ledger selector yet)",
    }[ours["reader"]]
    print(f"  ours   {ours['library']}; balance read: {read_name}")
    print("         ours-row: the bare AccountBalance row read through its unique index, for reference")
    if hordak is not None:
        print(f"  hordak {hordak['library']}: Account.transfer_to, Account.get_balance()")
        if hordak["entries"] < ours["entries"]:
            print(
                f"  NOTE: hordak posted a sample of {hordak['entries']:,} entries, not {ours['entries']:,}: "
                "it slows as its tables grow, so the sample flatters its rate"
            )
        if hordak["entries"] < hordak["entries_asked"]:
            print(f"  NOTE: hordak ran out of its time budget after {hordak['entries']:,} entries")
    print()
    row_only = {
        **ours,
        "reads_checkpoint": ours["row_reads_checkpoint"],
        "reads_final": ours["row_reads_final"],
    }
    rows: list[tuple[str, dict[str, Any]]] = [("ours", ours)]
    if ours["reader"] != "row":
        rows.append(("ours-row", row_only))
    if hordak is not None:
        rows.append(("hordak", hordak))
    print(
        f"  {'':8}{'entries':>10}{'seconds':>10}{'entries/s':>12}{'reads/s @10k':>15}{'reads/s @end':>15}{'wrong':>7}"
    )
    for name, r in rows:
        # A hordak sample smaller than the checkpoint has no checkpoint reads.
        check = r["reads_checkpoint"] or {"reads_per_s": float("nan"), "wrong": 0}
        final = r["reads_final"]
        print(
            f"  {name:8}{r['entries']:>10,}{r['post_seconds']:>10.1f}{r['entries_per_s']:>12,.0f}"
            f"{check['reads_per_s']:>15,.0f}{final['reads_per_s']:>15,.0f}{check['wrong'] + final['wrong']:>7}"
        )
    print()
    for name, r in rows:
        if not r["reads_checkpoint"]:
            continue
        growth = r["reads_final"]["seconds"] / r["reads_checkpoint"]["seconds"]
        print(
            f"  {name}: 1,000 balance reads took {r['reads_checkpoint']['seconds'] * 1000:.0f} ms at "
            f"{workload.CHECKPOINT:,} entries and {r['reads_final']['seconds'] * 1000:.0f} ms at "
            f"{r['entries']:,} (x{growth:.2f})"
        )
    if hordak is None:
        print(f"RESULT ledger_balance_read {ours['reads_final']['reads_per_s']:.0f} reads/s ratio=n/a")
        print(f"RESULT ledger_posting {ours['entries_per_s']:.0f} entries/s ratio=n/a")
        return
    read_ratio = ours["reads_final"]["reads_per_s"] / hordak["reads_final"]["reads_per_s"]
    post_ratio = ours["entries_per_s"] / hordak["entries_per_s"]
    print(f"  posting ratio ours/hordak = {post_ratio:.1f}  (target >= 3)")
    print(f"  balance read ratio ours/hordak = {read_ratio:.1f}")
    print(
        f"RESULT ledger_balance_read {ours['reads_final']['reads_per_s']:.0f} reads/s ratio={read_ratio:.1f}"
    )
    print(f"RESULT ledger_posting {ours['entries_per_s']:.0f} entries/s ratio={post_ratio:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Ledger posting benchmark: ours against django-hordak.")
    parser.add_argument("--entries", type=int, default=workload.ENTRIES)
    parser.add_argument("--batch", type=int, default=workload.BATCH)
    parser.add_argument(
        "--hordak-entries",
        type=int,
        default=workload.HORDAK_SAMPLE,
        help="hordak's sample (default %(default)s; see workload.HORDAK_SAMPLE for why not 100,000)",
    )
    parser.add_argument("--hordak-max-post-seconds", type=float, default=240.0)
    parser.add_argument("--skip-hordak", action="store_true")
    args = parser.parse_args()
    if args.entries < workload.CHECKPOINT:
        parser.error(f"--entries must be at least {workload.CHECKPOINT}")

    if not args.skip_hordak:
        hordak_venv_ensure()
    server = server_url()
    ours_db = f"bench_ledger_{os.getpid()}"
    hordak_db = f"bench_hordak_{os.getpid()}"
    admin_execute(server, f'CREATE DATABASE "{ours_db}"')
    created = [ours_db]
    hordak: dict[str, Any] | None = None
    try:
        os.environ["DATABASE_URL"] = with_database(server, ours_db)
        os.environ["DJANGO_SETTINGS_MODULE"] = "distributor.settings"
        sys.path.insert(0, str(REPO_DIR))
        import django

        django.setup()
        log(f"ours: database {ours_db}")
        ours = ours_run(entries=args.entries, batch=args.batch)

        from django.db import connections

        connections.close_all()
        if not args.skip_hordak:
            admin_execute(server, f'CREATE DATABASE "{hordak_db}"')
            created.append(hordak_db)
            log(f"hordak: database {hordak_db}")
            hordak = hordak_run(
                database_url=with_database(server, hordak_db),
                entries=min(args.hordak_entries, args.entries),
                batch=args.batch,
                max_post_seconds=args.hordak_max_post_seconds,
            )
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        for name in created:
            admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(ours, hordak)
    wrong = sum(
        (r or {}).get("wrong", 0)
        for side in (ours, hordak or {})
        for key in ("reads_checkpoint", "reads_final", "row_reads_checkpoint", "row_reads_final")
        for r in [side.get(key)]
    )
    if wrong:
        # A fast ledger that reads wrong balances is no result: fail the command.
        print(f"ERROR: {wrong} balance reads disagreed with the hand-summed figures", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
