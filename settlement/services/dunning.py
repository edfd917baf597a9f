"""Dunning (§9, §11.9): chasing late payers through a book's levels, and lifting holds once paid.

A run looks at each account the book bills, finds its most overdue unpaid invoice, and applies the
highest level that invoice has reached: a reminder email, `on_hold` (authorize denies the account
and, through the ancestor check, its whole subtree), or `suspended`. Each level is taken once per
invoice (a unique row per invoice and level), so a rerun records and sends nothing. The account's
dunning state only escalates (active < on_hold < suspended) until no past-due debt remains.

Past-due debt is what the customer still owes on an invoice whose due date has passed: issued and
partially paid invoices, and written-off ones too. A write-off is the book admitting a likely loss,
not the customer being forgiven (§11.14: the debt still stands), so it neither lifts a hold nor
stops escalation; only money (a payment, a recovery, a credit note) clears the debt.

Reminders are sent inside the run's transaction: if the mail server refuses, the step rolls back and
the next run tries again (a duplicate reminder is better than a missing one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string

from distributor.errors import ValidationFailed
from distributor.money import round_minor
from ledger.models import Book
from settlement.models import (
    DunningAction,
    DunningContact,
    DunningLevel,
    DunningState,
    DunningStep,
    Invoice,
    InvoiceStatus,
)

logger = logging.getLogger(__name__)

ACTIVE = "active"
# The order dunning escalates in; a level never moves an account down this list.
SEVERITY: dict[str, int] = {ACTIVE: 0, DunningAction.ON_HOLD: 1, DunningAction.SUSPENDED: 2}
LEVEL_ACTIONS = (DunningAction.REMINDER, DunningAction.ON_HOLD, DunningAction.SUSPENDED)
# Invoices that can still carry debt the customer owes (a written-off one still does, §11.14).
DEBT_STATUSES = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.WRITTEN_OFF)


# --- levels --------------------------------------------------------------------------------------


def dunning_levels_validate(levels: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The levels sorted by days, or ValidationFailed: days are whole numbers from 1 and distinct;
    `on_hold` may not come after `suspended` (dunning only escalates)."""

    cleaned: list[tuple[int, str]] = []
    for days, action in levels:
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise ValidationFailed(
                "a dunning level starts at a whole number of days past due, 1 or more", details={"days": days}
            )
        if action not in LEVEL_ACTIONS:
            raise ValidationFailed(
                f"unknown dunning action {action!r}",
                details={"action": action, "allowed": [str(a) for a in LEVEL_ACTIONS]},
            )
        cleaned.append((days, str(action)))
    cleaned.sort()
    if len({days for days, _ in cleaned}) != len(cleaned):
        raise ValidationFailed("two dunning levels start on the same day", details={"levels": cleaned})
    worst = ACTIVE
    for days, action in cleaned:
        rank = SEVERITY.get(action, 0)
        # A reminder may follow a hold (a later nudge); a hold after a suspension would undo it.
        if rank and rank < SEVERITY[worst]:
            raise ValidationFailed(
                f"{action} at {days} days comes after {worst}: dunning only escalates",
                details={"levels": cleaned},
            )
        if rank:
            worst = action
    return cleaned


def dunning_levels_set(*, book: Book, levels: Sequence[tuple[int, str]]) -> list[DunningLevel]:
    """Replace the book's levels with `levels` ((days past due, action) pairs), validated as a set
    (`dunning_levels_validate`)."""
    cleaned = dunning_levels_validate(levels)
    with transaction.atomic():
        Book.objects.select_for_update().get(pk=book.pk)
        DunningLevel.objects.filter(book=book).delete()
        return DunningLevel.objects.bulk_create(
            [DunningLevel(book=book, days=days, action=action) for days, action in cleaned]
        )


def dunning_levels(*, book: Book) -> list[DunningLevel]:
    return list(DunningLevel.objects.filter(book=book).order_by("days"))


# --- reads ---------------------------------------------------------------------------------------


def book_date(book: Book, moment: datetime) -> date:
    """The calendar date of `moment` in the book's zone (aging and dunning count in it, §11.11)."""
    if moment.tzinfo is None:
        raise ValidationFailed("the time must carry a time zone", details={"at": str(moment)})
    return moment.astimezone(ZoneInfo(book.timezone)).date()


def invoice_owed(invoice: Invoice) -> Decimal:
    """What the customer still owes on it. A write-off does not reduce it (§11.14)."""
    return invoice.total - invoice.paid_amount - invoice.credited_amount


@dataclass(frozen=True, slots=True)
class PastDue:
    invoice: Invoice
    owed: Decimal
    days: int


def past_due_invoices(*, account: Any, on: date) -> list[PastDue]:
    """The account's invoices with debt past their due date on `on`, most overdue first."""
    rows = Invoice.objects.filter(account=account, status__in=DEBT_STATUSES, due_date__lt=on).order_by(
        "due_date", "number"
    )
    found = []
    for invoice in rows:
        owed = invoice_owed(invoice)
        if owed > 0:
            found.append(PastDue(invoice=invoice, owed=owed, days=(on - invoice.due_date).days))
    return found


# --- the run -------------------------------------------------------------------------------------


def _state_locked(account: Any) -> DunningState:
    DunningState.objects.get_or_create(account=account)
    return DunningState.objects.select_for_update().get(account=account)


def _recipients(account: Any) -> list[str]:
    contact = DunningContact.objects.filter(account=account).first()
    if contact is not None:
        return [contact.email]
    return [getattr(settings, "DUNNING_FALLBACK_EMAIL", settings.DEFAULT_FROM_EMAIL)]


def _email_send(*, account: Any, book: Book, action: str, overdue: list[PastDue], on: date) -> str:
    """The reminder (or hold / suspension notice) for every past-due invoice. Returns the recipients."""
    to = _recipients(account)
    total = sum((p.owed for p in overdue), Decimal(0))
    context = {
        "account": account,
        "book": book,
        "action": action,
        "on": on,
        "currency": account.currency,
        "rows": [
            {
                "number": p.invoice.number,
                "label": p.invoice.label,
                "issue_date": p.invoice.issue_date,
                "due_date": p.invoice.due_date,
                "total": round_minor(p.invoice.total, p.invoice.currency),
                "received": round_minor(p.invoice.total - p.owed, p.invoice.currency),
                "owed": round_minor(p.owed, p.invoice.currency),
                "days": p.days,
            }
            for p in overdue
        ],
        "total_owed": round_minor(total, account.currency),
    }
    subjects = {
        DunningAction.REMINDER: f"Payment reminder: {total:.2f} {account.currency} overdue",
        DunningAction.ON_HOLD: f"Your account {account.code} is on hold: {total:.2f} {account.currency} overdue",
        DunningAction.SUSPENDED: f"Your account {account.code} is suspended: {total:.2f} {account.currency} overdue",
    }
    message = EmailMultiAlternatives(
        subject=f"{subjects[DunningAction(action)]} ({book.name})",
        body=render_to_string("settlement/email/dunning_reminder.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
    )
    message.attach_alternative(
        render_to_string("settlement/email/dunning_reminder.html", context), "text/html"
    )
    message.send()
    return ", ".join(to)


def _status_write(*, account: Any, status: str) -> None:
    """Through accounts' service: audited, and it refreshes the authorize cache of the whole
    subtree once the transaction commits (so the hold stops every descendant at once)."""
    from accounts.services import account_update

    account_update(account=account, status=status)


def _account_dun(
    *, account: Any, book: Book, levels: list[DunningLevel], as_of: datetime
) -> list[DunningStep]:
    on = book_date(book, as_of)
    overdue = past_due_invoices(account=account, on=on)
    state = _state_locked(account)
    if not overdue:
        # Nothing past due any more (a credit note, or a payment recorded around the run): lift.
        step = _lift(account=account, book=book, state=state, at=as_of)
        return [step] if step is not None else []
    worst = overdue[0]
    reached = [level for level in levels if level.days <= worst.days]
    if not reached:
        return []
    level = reached[-1]
    if DunningStep.objects.filter(invoice=worst.invoice, level_days__gte=level.days).exists():
        return []
    account.refresh_from_db(fields=["status"])
    status_before = account.status
    status_after = status_before
    if level.action != DunningAction.REMINDER and SEVERITY[level.action] > SEVERITY[state.state]:
        state.state = level.action
        state.since = as_of
        if account.status in (ACTIVE, DunningAction.ON_HOLD) and account.status != level.action:
            _status_write(account=account, status=level.action)
            state.status_set = level.action
            status_after = level.action
        state.save()
    emailed_to = _email_send(account=account, book=book, action=level.action, overdue=overdue, on=on)
    return [
        DunningStep.objects.create(
            account=account,
            book=book,
            invoice=worst.invoice,
            action=level.action,
            level_days=level.days,
            days_past_due=worst.days,
            amount_due=sum((p.owed for p in overdue), Decimal(0)),
            currency=account.currency,
            at=as_of,
            status_before=status_before,
            status_after=status_after,
            emailed_to=emailed_to,
        )
    ]


def dunning_run(*, book: Book, as_of: datetime) -> list[DunningStep]:
    """Move every account the book bills to the level its most overdue invoice has reached (as of
    `as_of`, counted in calendar dates in the book's zone). Returns the steps taken; a rerun at the
    same or an earlier time takes none. Each account is its own transaction, so one account's
    failure (a refused email) does not undo the others'."""
    from accounts.models import Account

    book_date(book, as_of)
    levels = dunning_levels(book=book)
    steps: list[DunningStep] = []
    candidates = set(
        Invoice.objects.filter(
            issuer_book=book, status__in=DEBT_STATUSES, due_date__lt=book_date(book, as_of)
        ).values_list("account_id", flat=True)
    )
    # Accounts held by dunning are revisited too: their debt may have been cleared since.
    candidates |= set(
        DunningState.objects.filter(account__book=book)
        .exclude(state=ACTIVE)
        .values_list("account_id", flat=True)
    )
    for account in (
        Account.objects.filter(pk__in=candidates, book=book).exclude(status="closed").order_by("pk")
    ):
        if not levels and not DunningState.objects.filter(account=account).exclude(state=ACTIVE).exists():
            continue
        with transaction.atomic():
            steps += _account_dun(account=account, book=book, levels=levels, as_of=as_of)
    return steps


def dunning_run_all(*, as_of: datetime) -> dict[str, int]:
    """Every book's run (the daily job); returns steps taken per book code."""
    return {book.code: len(dunning_run(book=book, as_of=as_of)) for book in Book.objects.order_by("pk")}


# --- lifting -------------------------------------------------------------------------------------


def _lift(*, account: Any, book: Book, state: DunningState, at: datetime) -> DunningStep | None:
    if state.state == ACTIVE:
        return None
    account.refresh_from_db(fields=["status"])
    status_before = account.status
    # Only undo what dunning did: a hold finance set by hand (or a closure) stays.
    if state.status_set and account.status == state.status_set:
        _status_write(account=account, status=ACTIVE)
    account.refresh_from_db(fields=["status"])
    state.state, state.status_set, state.since = ACTIVE, "", at
    state.save()
    return DunningStep.objects.create(
        account=account,
        book=book,
        action=DunningAction.LIFTED,
        amount_due=Decimal(0),
        currency=account.currency,
        at=at,
        status_before=status_before,
        status_after=account.status,
    )


def dunning_lift_if_settled(*, account: Any, at: datetime) -> bool:
    """Lift the hold or suspension dunning put on `account` once no past-due debt remains at `at`
    (payment in full lifts automatically, §9). Records a `lifted` step; True if it lifted."""
    if not DunningState.objects.filter(account=account).exclude(state=ACTIVE).exists():
        return False
    book = Book.objects.get(pk=account.book_id)
    with transaction.atomic():
        if past_due_invoices(account=account, on=book_date(book, at)):
            return False
        return _lift(account=account, book=book, state=_state_locked(account), at=at) is not None


# --- contacts ------------------------------------------------------------------------------------


def dunning_contact_set(*, account: Any, email: str, name: str = "") -> DunningContact:
    """Where the account's reminders go (one address per account; setting it again replaces it)."""
    from django.core.exceptions import ValidationError as DjangoValidationError
    from django.core.validators import validate_email

    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationFailed("not an email address", details={"email": email}) from None
    contact, _ = DunningContact.objects.update_or_create(
        account=account, defaults={"email": email, "name": name}
    )
    return contact
