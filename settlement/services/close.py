"""The close (§7): per book and period, draw a draft invoice for every postpaid account billed from
the book and a statement for every prepaid one (and, §11.12, an invoice for what its wallet could
not pay).

A close is a CloseRun row, unique per (book, period kind, period start), worked through in chunks
of accounts in id order. Each chunk is one durable transaction that first locks the run row, reads
the chunk's rollups, charges and invoices set-based, writes, and advances `last_account_id`. So a
crashed run resumes where it stopped, a rerun of a finished run only re-derives drafts (which
writes nothing when nothing changed), and two workers closing the same book queue on the run row
and produce one set of invoices.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from distributor.errors import ValidationFailed
from ledger.models import Book
from settlement.models import (
    CloseRun,
    CloseRunStatus,
    Invoice,
    InvoiceStatus,
    ManualCharge,
    PeriodKind,
)
from settlement.selectors import unbilled_by_payer
from settlement.services.invoicing import (
    Period,
    accounts_drafts_sync,
    book_zone,
    latest_ended,
    usage_revisions,
)
from settlement.services.prepaid_shortfalls import prepaid_shortfalls_invoice
from settlement.services.statements import statements_draw

CLOSE_CHUNK_SIZE = 200
# Which terms each kind of run closes: monthly runs also draw the prepaid statements.
RUN_TERMS: dict[str, tuple[str, ...]] = {
    PeriodKind.MONTH: ("monthly", "prepaid"),
    PeriodKind.QUARTER: ("quarterly",),
}
# Crash tests set this to hold the run between chunks, so a SIGKILL lands mid-run (tests only).
PAUSE_ENV = "DISTRIBUTOR_CLOSE_PAUSE_AFTER_CHUNK"
# Crash tests run the real task in a worker, which cannot be handed a chunk size: this env variable
# sets the default one there, so a book of 40 accounts spans several chunks (tests only).
CHUNK_ENV = "DISTRIBUTOR_CLOSE_CHUNK_SIZE"


def close_run(*, book: Book, now: datetime, chunk_size: int | None = None) -> list[CloseRun]:
    """Close every account billed from `book` whose period has ended at `now`. Must not run inside
    another transaction (each chunk commits on its own). Returns the runs, finished."""
    from accounts.models import Account

    if chunk_size is None:
        chunk_size = int(os.environ.get(CHUNK_ENV) or CLOSE_CHUNK_SIZE)

    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone")
    tz = book_zone(book)
    runs: list[CloseRun] = []
    for kind, terms in RUN_TERMS.items():
        if not Account.objects.filter(book=book, terms__in=terms).exists():
            continue
        period = latest_ended(kind, now, tz)
        run = _run_open(book=book, period=period, now=now)
        rerun = run.status == CloseRunStatus.DONE
        while run.status != CloseRunStatus.DONE:
            run = _chunk_close(run=run, period=period, terms=terms, chunk_size=chunk_size, now=now)
            pause_for_crash_tests()
        if rerun:
            # A run that has just gone through every account needs no second pass; a rerun (the
            # issue job, the next night) picks up what arrived since (issuing re-rates anyway).
            _late_sweep(run=run, period=period, now=now, chunk_size=chunk_size)
        runs.append(run)
    return runs


def _run_open(*, book: Book, period: Period, now: datetime) -> CloseRun:
    try:
        run, _ = CloseRun.objects.get_or_create(
            book=book,
            period_kind=period.kind,
            period_start=period.start,
            defaults={"period_end": period.end, "label": period.label, "run_at": now},
        )
    except IntegrityError:
        # Another worker created it between our read and insert: use theirs.
        run = CloseRun.objects.get(book=book, period_kind=period.kind, period_start=period.start)
    return run


def _chunk_close(
    *, run: CloseRun, period: Period, terms: Sequence[str], chunk_size: int, now: datetime
) -> CloseRun:
    from accounts.models import Account

    with transaction.atomic(durable=True):
        run = CloseRun.objects.select_for_update().select_related("book").get(pk=run.pk)
        if run.status == CloseRunStatus.DONE:
            return run
        accounts = list(
            Account.objects.filter(book=run.book, terms__in=terms, pk__gt=run.last_account_id)
            .select_related("parent", "own_book")
            .order_by("pk")[:chunk_size]
        )
        if not accounts:
            run.status = CloseRunStatus.DONE
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            return run
        _accounts_close(run=run, accounts=accounts, period=period, now=now)
        run.last_account_id = accounts[-1].pk
        run.save(update_fields=["last_account_id", "invoices_drafted", "statements_drawn"])
    return run


def _accounts_close(*, run: CloseRun, accounts: Sequence[Any], period: Period, now: datetime) -> None:
    prepaid = [a for a in accounts if a.terms == "prepaid"]
    postpaid = [a for a in accounts if a.terms != "prepaid"]
    if prepaid:
        run.statements_drawn += statements_draw(book=run.book, accounts=prepaid, period=period, now=now)
        # §11.12: what the wallets could not pay is billed now (issued at once: nothing to re-rate).
        prepaid_shortfalls_invoice(book=run.book, accounts=prepaid, period=period, now=now)
    if postpaid:
        run.invoices_drafted += accounts_drafts_sync(accounts=postpaid, book=run.book, latest=period, now=now)


def _late_sweep(*, run: CloseRun, period: Period, now: datetime, chunk_size: int) -> None:
    """Re-derive the drafts of every account whose billing may have moved since the run's chunks:
    unbilled usage and no draft (late events), a draft whose payer's usage has moved since it was
    drawn (late events in grace), charges recorded since. Other drafts are left to the issue job,
    which re-plans any whose account, charges or other invoices have changed since. Writes nothing
    when nothing changed."""
    from accounts.models import Account

    book = run.book
    postpaid = set(
        Account.objects.filter(book=book, terms__in=RUN_TERMS[run.period_kind])
        .exclude(terms="prepaid")
        .values_list("pk", flat=True)
    )
    unbilled = set(unbilled_by_payer(payer_account_ids=postpaid, through=period.end))
    drafts = list(
        Invoice.objects.filter(issuer_book=book, status=InvoiceStatus.DRAFT).values_list(
            "account_id", "usage_revision", "updated_at"
        )
    )
    drawn: dict[int, datetime] = {}
    for payer, _, updated_at in drafts:
        drawn[payer] = min(updated_at, drawn.get(payer, updated_at))
    revisions = usage_revisions(account_ids=sorted(drawn), through=period.end)
    candidates = (
        (unbilled - set(drawn))
        | {payer for payer, revision, _ in drafts if revision != revisions.get(payer, 0)}
        | {
            # A charge recorded since the account's drafts were last written (issuing re-plans with
            # the pending charges in any case).
            payer
            for payer, created_at in ManualCharge.objects.filter(
                account__book=book, invoice__isnull=True
            ).values_list("account_id", "created_at")
            if payer not in drawn or created_at >= drawn[payer]
        }
    )
    ids = sorted(candidates & postpaid)
    for offset in range(0, len(ids), chunk_size):
        with transaction.atomic(durable=True):
            # The run row serialises this with other closers of the same book and period.
            CloseRun.objects.select_for_update().filter(pk=run.pk).first()
            accounts = list(
                Account.objects.filter(pk__in=ids[offset : offset + chunk_size])
                .select_related("parent", "own_book")
                .order_by("pk")
            )
            accounts_drafts_sync(accounts=accounts, book=book, latest=period, now=now)


def pause_for_crash_tests() -> None:
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))


def close_all_books(*, now: datetime) -> dict[str, list[CloseRun]]:
    """Close every book (beat's month-end job)."""
    return {book.code: close_run(book=book, now=now) for book in Book.objects.order_by("pk")}
