"""Invoices (§7, §11.1-§11.4, §11.13): billing periods, the derivation of drafts from the usage
rollups, manual charges, and issuing (gapless numbers, ledger postings).

A draft is not money: `accounts_drafts_sync` re-derives it from the rollups when the close runs,
and writes only when something changed. Each unbilled rollup row, and each pending manual charge,
belongs to the period containing its day; it is billed on that period's invoice while that invoice
is a draft (or can still be drawn), else on the latest closed period's invoice as a `late` line at
its original unit price (§11.4).

What an invoice bills of the rollups is kept with it (`InvoiceUsage`: one row per month, model,
class and unit price), and becomes billed when the invoice stops being a draft: issuing writes
nothing to the ~1,200 rollup rows a month of each account. A draft also remembers the revision of
its payer's usage accruals (`UsageAccrual`); when no usage of the period has arrived since, issuing
re-plans it from its own usage rows instead of summing the rollups again.
"""

from __future__ import annotations

import functools
import os
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from accounts.webhooks import invoices_issued_emit
from distributor.errors import Conflict, ValidationFailed
from distributor.money import check_currency, round_minor, to_decimal
from distributor.sql import rows_insert
from ledger.models import Book
from ledger.services import EntryDraft, credit, debit, entries_post
from settlement.models import (
    TOKEN_CLASSES,
    CloseRun,
    Invoice,
    InvoiceLineKind,
    InvoiceStatus,
    ManualCharge,
    NumberCounter,
    PeriodKind,
)
from settlement.services.credit_control import credit_states_refresh_on_commit

SHORTFALL_DESCRIPTION = "Commitment shortfall"
TERMS_KIND = {"monthly": PeriodKind.MONTH, "quarterly": PeriodKind.QUARTER, "prepaid": PeriodKind.MONTH}
_CLASS_ORDER = {name: i for i, name in enumerate(TOKEN_CLASSES)}


# --- periods ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A calendar month or quarter; `end` is its last calendar date (in the book's zone)."""

    start: date
    end: date
    kind: str

    @property
    def label(self) -> str:
        if self.kind == PeriodKind.QUARTER:
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.year}-{self.start.month:02d}"

    @property
    def months(self) -> int:
        return 3 if self.kind == PeriodKind.QUARTER else 1

    def starts_at(self, tz: zoneinfo.ZoneInfo) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=tz)

    def ends_at(self, tz: zoneinfo.ZoneInfo) -> datetime:
        """The instant the period is over: midnight after its last date, in the book's zone."""
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=tz)

    def following(self) -> Period:
        return period_of(self.kind, self.end + timedelta(days=1))

    def preceding(self) -> Period:
        return period_of(self.kind, self.start - timedelta(days=1))


@functools.lru_cache(maxsize=4096)
def period_of(kind: str, day: date) -> Period:
    months = 3 if kind == PeriodKind.QUARTER else 1
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    after = date(start.year + (first_month + months - 1) // 12, (first_month + months - 1) % 12 + 1, 1)
    return Period(start=start, end=after - timedelta(days=1), kind=kind)


def period_from_label(label: str) -> Period:
    try:
        year, rest = label.split("-")
        if rest.upper().startswith("Q"):
            return period_of(PeriodKind.QUARTER, date(int(year), (int(rest[1:]) - 1) * 3 + 1, 1))
        return period_of(PeriodKind.MONTH, date(int(year), int(rest), 1))
    except (ValueError, IndexError) as exc:
        raise ValidationFailed(
            f"{label!r} is not a period like 2026-10 or 2026-Q4", details={"period": label}
        ) from exc


def book_zone(book: Book) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(book.timezone)


def latest_ended(kind: str, now: datetime, tz: zoneinfo.ZoneInfo) -> Period:
    """The last period of this kind that is over at `now` in the book's zone."""
    return period_of(kind, now.astimezone(tz).date()).preceding()


def issue_due_at(period: Period, book: Book) -> datetime:
    """Drafts are issued grace_days after their period ended (finance may issue earlier)."""
    return period.ends_at(book_zone(book)) + timedelta(days=book.grace_days)


# --- manual charges --------------------------------------------------------------------------------


def manual_charge_record(
    *, account: Any, description: str, amount: Decimal, at: datetime, reference: str = ""
) -> ManualCharge:
    """An enterprise service charge for the account's invoice of the period containing `at`
    (§11.3). It is priced in the minor unit; more places are refused rather than rounded away."""
    amount = to_decimal(amount, field="amount")
    if amount <= 0 or round_minor(amount, account.currency) != amount:
        raise ValidationFailed(
            "a manual charge is a positive amount in the minor unit", details={"amount": str(amount)}
        )
    if not description.strip():
        raise ValidationFailed("a manual charge needs a description")
    if at.tzinfo is None:
        raise ValidationFailed("at must carry a time zone")
    if account.terms == "prepaid":
        raise ValidationFailed(
            "prepaid accounts get statements, not invoices: record a top-up deduction instead",
            details={"account": account.code},
        )
    with transaction.atomic():
        if reference:
            existing = ManualCharge.objects.filter(account=account, reference=reference).first()
            if existing is not None:
                if (existing.amount, existing.description, existing.at) != (amount, description, at):
                    raise Conflict(
                        "a manual charge with this reference was recorded with different content",
                        details={"reference": reference},
                    )
                return existing
        return ManualCharge.objects.create(
            account=account,
            description=description.strip(),
            amount=amount,
            currency=check_currency(account.currency),
            at=at,
            reference=reference,
        )


# --- the billing plan of one account ---------------------------------------------------------------


class RollupSlice(NamedTuple):
    """The unbilled part of the rollup rows of one payer, month, model, token class and unit
    price, summed in SQL: the close reads a few dozen of these per account instead of one per row
    and day (the rows of a month are ~1,200 per account at 20 models). `day` is the month's earliest
    day with usage at this price. (Named tuples: a month of 10,000 accounts makes ~400,000 of
    these and of PlannedLine, and a frozen dataclass costs several times more to build.)"""

    month: date
    day: date
    model_id: int
    model_code: str
    token_class: str
    unit_price: Decimal
    tokens: int
    amount: Decimal


class PlannedLine(NamedTuple):
    """One line as planned; as a tuple it is the stored row (`stored_lines`)."""

    kind: str
    description: str
    model_code: str
    token_class: str
    tokens: int | None
    unit_price: Decimal | None
    late: bool
    exact_amount: Decimal
    amount: Decimal


@dataclass(slots=True)
class PlannedInvoice:
    period: Period
    lines: list[PlannedLine] = field(default_factory=list)
    usage: list[RollupSlice] = field(default_factory=list)
    charge_ids: list[int] = field(default_factory=list)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


# Per payer, month, model, class and unit price: rated usage (the monthly accruals rating keeps
# beside the daily rollups) less what non-draft invoices bill of it.
_UNBILLED_SLICES = """
    WITH rated AS (
        SELECT payer_account_id AS payer, month, first_day, model_id, model_code, token_class, unit_price,
               tokens, amount
        FROM settlement_usageaccrual
        WHERE payer_account_id = ANY(%(ids)s) AND month <= %(through)s
    ), billed AS (
        SELECT u.payer_account_id AS payer, u.month, u.model_id, u.token_class, u.unit_price,
               sum(u.tokens) AS tokens, sum(u.amount) AS amount
        FROM settlement_invoiceusage u JOIN settlement_invoice i ON i.id = u.invoice_id
        WHERE u.payer_account_id = ANY(%(ids)s) AND i.status <> 'draft' AND u.month <= %(through)s
        GROUP BY 1, 2, 3, 4, 5
    )
    SELECT r.payer, r.month, r.first_day, r.model_id, r.model_code, r.token_class, r.unit_price,
           r.tokens - coalesce(b.tokens, 0), r.amount - coalesce(b.amount, 0)
    FROM rated r LEFT JOIN billed b
      ON b.payer = r.payer AND b.month = r.month AND b.model_id = r.model_id
     AND b.token_class = r.token_class AND b.unit_price = r.unit_price
    WHERE r.tokens <> coalesce(b.tokens, 0) OR r.amount <> coalesce(b.amount, 0)
"""


def unbilled_slices(*, account_ids: Sequence[int], through: date) -> dict[int, list[RollupSlice]]:
    """Unbilled postpaid usage of these payers up to the end of a period (`through`: a month's
    last day), per month, model, token class and unit price, one query; exact (NUMERIC), nothing is
    rounded here."""
    found: dict[int, list[RollupSlice]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(_UNBILLED_SLICES, {"ids": list(account_ids), "through": through})
        for payer, month, day, model_id, model_code, token_class, unit_price, tokens, amount in cursor:
            found[payer].append(
                RollupSlice(month, day, model_id, model_code, token_class, unit_price, int(tokens), amount)
            )
    return found


def usage_revisions(*, account_ids: Sequence[int], through: date) -> dict[int, int]:
    """Per payer, the sum of its usage accrual revisions for the months up to `through`: it moves
    whenever a batch lands usage in one of those months. Read it *before* summing the rollups, so a
    batch committing in between makes the stored revision older than the sums, never newer."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT payer_account_id, sum(revision) FROM settlement_usageaccrual"
            " WHERE payer_account_id = ANY(%s) AND month <= %s GROUP BY payer_account_id",
            [list(account_ids), through],
        )
        return {payer: int(revision) for payer, revision in cursor}


def stored_usage(*, invoice_ids: Sequence[int]) -> dict[int, list[RollupSlice]]:
    """The usage rows of these invoices, as slices (a draft re-planned from what it bills)."""
    found: dict[int, list[RollupSlice]] = defaultdict(list)
    if not invoice_ids:
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT invoice_id, month, first_day, model_id, model_code, token_class, unit_price, tokens,
                   amount
            FROM settlement_invoiceusage WHERE invoice_id = ANY(%s)
            """,
            [list(invoice_ids)],
        )
        make = RollupSlice._make
        for row in cursor:
            found[row[0]].append(make(row[1:]))
    return found


def _same_usage(stored: Iterable[RollupSlice], planned: Iterable[RollupSlice]) -> bool:
    return sorted(stored) == sorted(planned)


def pending_charges(*, account_ids: Sequence[int], through: datetime) -> dict[int, list[ManualCharge]]:
    found: dict[int, list[ManualCharge]] = defaultdict(list)
    for charge in ManualCharge.objects.filter(
        account_id__in=account_ids, invoice__isnull=True, at__lt=through
    ).order_by("at", "pk"):
        found[charge.account_id].append(charge)
    return found


def closed_periods(*, book: Book, kind: str) -> set[date]:
    return set(CloseRun.objects.filter(book=book, period_kind=kind).values_list("period_start", flat=True))


def billing_plan(
    *,
    account: Any,
    book: Book,
    latest: Period,
    now: datetime,
    slices: Iterable[RollupSlice],
    charges: Iterable[ManualCharge],
    invoices: dict[date, Invoice],
    closed: set[date],
) -> dict[Period, PlannedInvoice]:
    """Which invoice each unbilled item goes on, and the lines that makes (pure: no queries).

    An item of period Q goes on Q's invoice while it is a draft, or (no invoice yet) when Q is the
    period being closed, was never closed, or is still in grace; otherwise it is late and goes on
    the latest closed period's invoice if that is not issued yet, else it waits for the next close.
    """
    tz = book_zone(book)
    latest_invoice = invoices.get(latest.start)
    latest_open = latest_invoice is None or latest_invoice.status == InvoiceStatus.DRAFT

    def target(own: Period) -> Period | None:
        invoice = invoices.get(own.start)
        if invoice is not None and invoice.status == InvoiceStatus.DRAFT:
            return own
        if invoice is None and (own == latest or own.start not in closed or now < issue_due_at(own, book)):
            return own
        return latest if latest_open else None

    plans: dict[Period, PlannedInvoice] = {}

    def plan_for(period: Period) -> PlannedInvoice:
        found = plans.get(period)
        if found is None:
            found = plans[period] = PlannedInvoice(period=period)
        return found

    kind = latest.kind
    # Where each month's items go is decided once a month (an account has a few, ~40 items each).
    months: dict[date, list[RollupSlice]] = {}
    for item in slices:
        found = months.get(item.month)
        if found is None:
            months[item.month] = [item]
        else:
            found.append(item)
    targets: dict[Period, list[tuple[bool, list[RollupSlice]]]] = {}
    for month, items in months.items():
        own = period_of(kind, month)
        goes_to = target(own)
        if goes_to is not None:
            targets.setdefault(goes_to, []).append((own < goes_to, items))

    currency = account.currency
    for period, parts in targets.items():
        plan = plan_for(period)
        # §11.13: a line per model, class and unit price (so a price version that keeps the unit
        # price does not split a line), printed by model, class, then price in the order the prices
        # came into force. Keys: (late, model, code, class order, first day, unit price).
        grouped: list[tuple[tuple[bool, int, str, int, date, Decimal], list[RollupSlice]]]
        if len(parts) == 1:
            # One month: its items are already one per model, class and unit price (the common
            # case, and no Decimal is hashed).
            late, items = parts[0]
            grouped = [
                (
                    (late, i.model_id, i.model_code, _CLASS_ORDER.get(i.token_class, 9), i.day, i.unit_price),
                    [i],
                )
                for i in items
            ]
        else:
            by_key: dict[tuple[bool, int, str, int, Decimal], list[RollupSlice]] = defaultdict(list)
            for late, items in parts:
                for i in items:
                    by_key[
                        (late, i.model_id, i.model_code, _CLASS_ORDER.get(i.token_class, 9), i.unit_price)
                    ].append(i)
            grouped = [((*k[:4], min(i.day for i in v), k[4]), v) for k, v in by_key.items()]
        grouped.sort(key=itemgetter(0))
        usage = plan.usage
        append = plan.lines.append
        for (late, _, model_code, _, _, unit_price), items in grouped:
            usage.extend(items)
            first = items[0]
            if len(items) == 1:
                exact, tokens = first.amount, first.tokens
            else:
                exact = sum((i.amount for i in items), Decimal(0))
                tokens = sum(i.tokens for i in items)
            token_class = first.token_class
            append(
                PlannedLine(
                    InvoiceLineKind.USAGE,
                    f"{model_code} {token_class} (late usage)" if late else f"{model_code} {token_class}",
                    model_code,
                    token_class,
                    tokens,
                    unit_price,
                    late,
                    exact,
                    round_minor(exact, currency),
                )
            )

    for charge in charges:
        goes_to = target(period_of(kind, charge.at.astimezone(tz).date()))
        if goes_to is None:
            continue
        plan = plan_for(goes_to)
        plan.charge_ids.append(charge.pk)
        plan.lines.append(
            PlannedLine(
                kind=InvoiceLineKind.CHARGE,
                description=charge.description,
                model_code="",
                token_class="",
                tokens=None,
                unit_price=None,
                late=False,
                exact_amount=charge.amount,
                amount=round_minor(charge.amount, account.currency),
            )
        )

    commitment = account.commitment or Decimal(0)
    if commitment > 0:
        # §11.2: the latest period always faces its commitment; an earlier one only if it is drawn.
        for period in sorted({latest, *plans}):
            existing = invoices.get(period.start)
            if existing is not None and existing.status != InvoiceStatus.DRAFT:
                continue
            used = sum(
                (
                    line.amount
                    for line in plans[period].lines
                    if line.kind == InvoiceLineKind.USAGE and not line.late
                )
                if period in plans
                else (),
                Decimal(0),
            )
            shortfall = commitment * period.months - used
            if shortfall > 0:
                plan_for(period).lines.append(
                    PlannedLine(
                        kind=InvoiceLineKind.SHORTFALL,
                        description=SHORTFALL_DESCRIPTION,
                        model_code="",
                        token_class="",
                        tokens=None,
                        unit_price=None,
                        late=False,
                        exact_amount=shortfall,
                        amount=round_minor(shortfall, account.currency),
                    )
                )

    for plan in plans.values():
        # §11.13: a 0.00 line is not printed (its rows are still billed with the invoice).
        plan.lines = [line for line in plan.lines if line.amount != 0]
    return plans


def invoice_tax(subtotal: Decimal, rate: Decimal, currency: str) -> Decimal:
    """§11.2: tax on the whole rounded subtotal, rounded once."""
    return round_minor(subtotal * rate, currency)


def invoice_due_date(period: Period, account: Any) -> date:
    """When an invoice for `period` is due: the period's end plus the account's net days."""
    return period.end + timedelta(days=account.net_days or 0)


def invoice_number(book: Book, year: int, sequence: int) -> str:
    """The printed number of the book's `sequence`-th invoice issued in `year` (series INV)."""
    return f"{book.code.upper()}-{year}-{sequence:06d}"


def _header(
    *, account: Any, book: Book, plan: PlannedInvoice, period: Period, revision: int | None
) -> dict[str, Any]:
    subtotal = plan.subtotal
    tax = invoice_tax(subtotal, account.tax_rate, account.currency)
    return {
        "issuer_book": book,
        "currency": account.currency,
        "period_end": period.end,
        "label": period.label,
        "due_date": invoice_due_date(period, account),
        "tax_rate": account.tax_rate,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "usage_revision": revision,
    }


_LINE_COLUMNS = (
    ("invoice_id", "bigint"),
    ("position", "int"),
    ("kind", "text"),
    ("description", "text"),
    ("model_code", "text"),
    ("token_class", "text"),
    ("tokens", "bigint"),
    ("unit_price", "numeric"),
    ("late", "boolean"),
    ("exact_amount", "numeric"),
    ("amount", "numeric"),
)
_USAGE_COLUMNS = (
    ("invoice_id", "bigint"),
    ("payer_account_id", "bigint"),
    ("month", "date"),
    ("first_day", "date"),
    ("model_id", "bigint"),
    ("model_code", "text"),
    ("token_class", "text"),
    ("unit_price", "numeric"),
    ("tokens", "bigint"),
    ("amount", "numeric"),
)


def _contents_insert(*, drafts: Sequence[tuple[Invoice, PlannedInvoice]]) -> None:
    """Insert the planned lines and usage of saved drafts, one statement each (INSERT ... unnest): a
    month of 10,000 invoices is ~400,000 lines, and ORM instances would cost ~10x the time
    (performance notes). Columns are built per invoice (a model's `pk` is a property lookup)."""
    _usage_insert(drafts=drafts)
    columns: list[list[Any]] = [[] for _ in _LINE_COLUMNS]
    for invoice, plan in drafts:
        count = len(plan.lines)
        columns[0].extend([invoice.pk] * count)
        columns[1].extend(range(1, count + 1))
        for line in plan.lines:
            # A PlannedLine's fields are the remaining columns, in order.
            for i, value in enumerate(line, start=2):
                columns[i].append(value)
    rows_insert(table="settlement_invoiceline", columns=_LINE_COLUMNS, values=columns)


def _usage_insert(*, drafts: Sequence[tuple[Invoice, PlannedInvoice]]) -> None:
    columns: list[list[Any]] = [[] for _ in _USAGE_COLUMNS]
    for invoice, plan in drafts:
        count = len(plan.usage)
        columns[0].extend([invoice.pk] * count)
        columns[1].extend([invoice.account_id] * count)
        for item in plan.usage:
            # A RollupSlice's fields are the remaining columns, in order.
            for i, value in enumerate(item, start=2):
                columns[i].append(value)
    rows_insert(table="settlement_invoiceusage", columns=_USAGE_COLUMNS, values=columns)


def stored_lines(*, invoice_ids: Sequence[int]) -> dict[int, list[tuple[Any, ...]]]:
    """The lines of these invoices as tuples in PlannedLine's field order, in position order, one query (a
    plain cursor: the ORM's per-value converters cost more than the query for 40 lines a draft)."""
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    if not invoice_ids:
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT invoice_id, kind, description, model_code, token_class, tokens, unit_price, late,
                   exact_amount, amount
            FROM settlement_invoiceline WHERE invoice_id = ANY(%s) ORDER BY invoice_id, position
            """,
            [list(invoice_ids)],
        )
        for invoice_id, *row in cursor:
            found[invoice_id].append(tuple(row))
    return found


def drafts_create(*, drafts: Sequence[tuple[Invoice, PlannedInvoice]]) -> None:
    """Insert new drafts with their lines and usage: three statements for a whole chunk of accounts."""
    if not drafts:
        return
    Invoice.objects.bulk_create([invoice for invoice, _ in drafts])
    _contents_insert(drafts=drafts)


def draft_write(
    *,
    account: Any,
    book: Book,
    plan: PlannedInvoice | None,
    period: Period,
    existing: Invoice | None,
    now: datetime,
    revision: int | None = None,
    lines: list[tuple[Any, ...]] | None = None,
    usage: list[RollupSlice] | None = None,
    created: list[tuple[Invoice, PlannedInvoice]] | None = None,
) -> Invoice | None:
    """Make the draft of `period` match its plan; write nothing if it already does. A plan with no
    lines means no invoice (§11.1): an existing draft is removed. Issued invoices are never touched.
    `revision` is the payer's usage revision the plan was derived at (`usage_revisions`). `lines`
    and `usage` are the existing draft's stored ones if the caller read them in bulk; with
    `created`, a new draft is not inserted but appended there for `drafts_create`."""
    if existing is not None and existing.status != InvoiceStatus.DRAFT:
        return existing
    if plan is None or not plan.lines:
        if existing is not None:
            existing.delete()
        return None
    header = _header(account=account, book=book, plan=plan, period=period, revision=revision)
    if existing is None:
        invoice = Invoice(
            account=account, period_kind=period.kind, period_start=period.start, drafted_at=now, **header
        )
        if created is not None:
            created.append((invoice, plan))
        else:
            drafts_create(drafts=[(invoice, plan)])
        return invoice
    invoice = existing
    if lines is None:
        lines = stored_lines(invoice_ids=[invoice.pk]).get(invoice.pk, [])
    if usage is None:
        usage = stored_usage(invoice_ids=[invoice.pk]).get(invoice.pk, [])
    changed = {
        k
        for k, v in header.items()
        if (getattr(invoice, "issuer_book_id") if k == "issuer_book" else getattr(invoice, k))  # noqa: B009
        != (v.pk if k == "issuer_book" else v)
    }
    same_lines = lines == plan.lines  # tuples against named tuples: field by field
    if not changed and same_lines and _same_usage(usage, plan.usage):
        return invoice
    for key in changed:
        setattr(invoice, key, header[key])
    if not same_lines or changed - {"usage_revision"}:
        # The document changed (not only the bookkeeping of what it was derived from).
        invoice.drafted_at = now
    invoice.save()
    invoice.lines.all().delete()
    invoice.usage.all().delete()
    _contents_insert(drafts=[(invoice, plan)])
    return invoice


def accounts_drafts_sync(*, accounts: Sequence[Any], book: Book, latest: Period, now: datetime) -> int:
    """Re-derive the drafts of these accounts (one kind of terms) with set-based reads: one query
    each for their invoices (locked), unbilled rollups, pending charges and the drafts' lines, and
    one insert each for new drafts and their lines. Returns how many drafts exist for `latest`
    afterwards. Runs inside the caller's transaction."""
    if not accounts:
        return 0
    ids = [a.pk for a in accounts]
    invoices: dict[int, dict[date, Invoice]] = defaultdict(dict)
    for invoice in (
        Invoice.objects.filter(account_id__in=ids, period_kind=latest.kind).order_by("pk").select_for_update()
    ):
        invoices[invoice.account_id][invoice.period_start] = invoice
    revisions = usage_revisions(account_ids=ids, through=latest.end)
    slices = unbilled_slices(account_ids=ids, through=latest.end)
    charges = pending_charges(account_ids=ids, through=latest.ends_at(book_zone(book)))
    closed = closed_periods(book=book, kind=latest.kind)
    draft_ids = [
        inv.pk for own in invoices.values() for inv in own.values() if inv.status == InvoiceStatus.DRAFT
    ]
    lines = stored_lines(invoice_ids=draft_ids)
    usage = stored_usage(invoice_ids=draft_ids)
    created: list[tuple[Invoice, PlannedInvoice]] = []
    drafted = 0
    for account in accounts:
        own = invoices[account.pk]
        plans = billing_plan(
            account=account,
            book=book,
            latest=latest,
            now=now,
            slices=slices.get(account.pk, ()),
            charges=charges.get(account.pk, ()),
            invoices=own,
            closed=closed,
        )
        periods = set(plans) | {
            period_of(latest.kind, start) for start, inv in own.items() if inv.status == InvoiceStatus.DRAFT
        }
        for period in sorted(periods):
            existing = own.get(period.start)
            written = draft_write(
                account=account,
                book=book,
                plan=plans.get(period),
                period=period,
                existing=existing,
                now=now,
                revision=revisions.get(account.pk, 0),
                lines=lines.get(existing.pk, []) if existing is not None else None,
                usage=usage.get(existing.pk, []) if existing is not None else None,
                created=created,
            )
            if written is not None and period == latest and written.status == InvoiceStatus.DRAFT:
                drafted += 1
    drafts_create(drafts=created)
    return drafted


# --- issuing ---------------------------------------------------------------------------------------


def numbers_take(*, book: Book, series: str, year: int, count: int) -> range:
    """The next `count` numbers of a gapless series, taken under a row lock held to the end of the
    caller's transaction: a rolled-back issue gives its numbers back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO settlement_numbercounter (book_id, series, year, last) VALUES (%s, %s, %s, 0)"
            " ON CONFLICT (book_id, series, year) DO NOTHING",
            [book.pk, series, year],
        )
    counter = NumberCounter.objects.select_for_update().get(book=book, series=series, year=year)
    first = counter.last + 1
    counter.last += count
    counter.save(update_fields=["last"])
    return range(first, counter.last + 1)


def number_next(*, book: Book, series: str, year: int) -> int:
    """The next number of a gapless series (see `numbers_take`)."""
    return numbers_take(book=book, series=series, year=year, count=1)[0]


def upstream_counterparty(account: Any) -> str:
    """Who an account owes, as seen in its own book: its parent, or the root book."""
    if account.parent_id is not None:
        return f"account:{account.parent.code}"
    return f"book:{account.book.code}"


def invoice_issue(*, invoice: Invoice, now: datetime) -> Invoice:
    """Issue a draft: re-rate it, number it, mark its charges billed (its usage rows are billed by
    the status), post it to both books of the hop, and apply any credit balance. Issuing an issued
    invoice returns it; a draft with nothing left to bill is refused (Conflict) and nothing is
    written."""
    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("issuer_book").get(pk=invoice.pk)
        if invoice.status != InvoiceStatus.DRAFT:
            return invoice
        _drafts_issue_locked(drafts=[invoice], now=now, strict=True)
    invoice.refresh_from_db()
    return invoice


def invoices_issue(*, invoice_ids: Sequence[int], now: datetime) -> list[Invoice]:
    """Issue many drafts in one transaction, set-based (the nightly issue job's unit of work): one
    read each for accounts, invoices, unbilled rollups, charges and lines, one block of numbers,
    one ledger batch per book (no rollup row is written). Numbers follow (period, account). A
    draft with nothing left to bill is removed and skipped; ids that are no longer drafts are
    skipped. Returns the invoices issued."""
    if now.tzinfo is None:
        raise ValidationFailed("now must carry a time zone")
    with transaction.atomic():
        # PostgreSQL re-checks the status under the lock: what a concurrent issuer has just issued
        # drops out here instead of being issued twice.
        drafts = list(
            Invoice.objects.filter(pk__in=invoice_ids, status=InvoiceStatus.DRAFT)
            .order_by("pk")
            .select_for_update(of=("self",))
            .select_related("issuer_book")
        )
        return _drafts_issue_locked(drafts=drafts, now=now)


def _drafts_issue_locked(*, drafts: Sequence[Invoice], now: datetime, strict: bool = False) -> list[Invoice]:
    """The body of issuing, inside the caller's transaction, for drafts it has locked."""
    from accounts.models import Account
    from settlement.models import Payment
    from settlement.services.payments import credit_balance_apply

    if not drafts:
        return []
    accounts = {
        a.pk: a
        for a in Account.objects.filter(pk__in={d.account_id for d in drafts}).select_related(
            "book", "own_book", "parent"
        )
    }
    # Each draft is re-rated against the latest period ended by now (late usage lands on it).
    groups: dict[tuple[int, str, Period], list[Invoice]] = defaultdict(list)
    for draft in drafts:
        period = period_of(draft.period_kind, draft.period_start)
        latest = max(latest_ended(period.kind, now, book_zone(draft.issuer_book)), period)
        groups[(draft.issuer_book_id, period.kind, latest)].append(draft)
    ready: list[tuple[Invoice, PlannedInvoice, Any]] = []
    for (_, kind, latest), members in groups.items():
        book = members[0].issuer_book
        tz = book_zone(book)
        account_ids = sorted({d.account_id for d in members})
        others: dict[int, dict[date, Invoice]] = defaultdict(dict)
        for other in Invoice.objects.filter(account_id__in=account_ids, period_kind=kind):
            others[other.account_id][other.period_start] = other
        revisions = usage_revisions(account_ids=account_ids, through=latest.end)
        charges = pending_charges(account_ids=account_ids, through=latest.ends_at(tz))
        # A draft whose payer has had no usage of these months land since it was drawn bills what
        # it already holds. If, besides, nothing else it was derived from has changed since it was
        # written (the account's terms, its charges, its other invoices), it is issued as it stands;
        # otherwise it is re-planned, from its own usage rows or, if usage arrived, from the months'.
        moved = {d.account_id for d in members if d.usage_revision != revisions.get(d.account_id, 0)}
        as_drawn = {
            d.pk
            for d in members
            if d.account_id not in moved
            and d.period_start == latest.start
            and d.account_id not in charges
            and accounts[d.account_id].updated_at <= d.updated_at
            and all(o.pk == d.pk or o.updated_at <= d.updated_at for o in others[d.account_id].values())
        }
        for draft in members:
            if draft.pk in as_drawn:
                ready.append((draft, PlannedInvoice(period=latest), accounts[draft.account_id]))
        members = [d for d in members if d.pk not in as_drawn]
        if not members:
            continue
        usage = stored_usage(invoice_ids=[d.pk for d in members])
        slices = unbilled_slices(account_ids=sorted(moved), through=latest.end) if moved else {}
        for draft in members:
            if draft.account_id not in moved:
                slices.setdefault(draft.account_id, []).extend(usage.get(draft.pk, []))
        closed = closed_periods(book=book, kind=kind)
        lines = stored_lines(invoice_ids=[d.pk for d in members])
        for draft in members:
            account = accounts[draft.account_id]
            period = period_of(kind, draft.period_start)
            plans = billing_plan(
                account=account,
                book=book,
                latest=latest,
                now=now,
                slices=slices.get(account.pk, ()),
                charges=charges.get(account.pk, ()),
                invoices={**others[account.pk], draft.period_start: draft},
                closed=closed,
            )
            plan = plans.get(period)
            if plan is None or not plan.lines:
                if strict:
                    raise Conflict(
                        "this draft has nothing left to bill and was removed",
                        details={"account": account.code, "period": period.label},
                    )
                draft_write(account=account, book=book, plan=None, period=period, existing=draft, now=now)
                continue
            draft_write(
                account=account,
                book=book,
                plan=plan,
                period=period,
                existing=draft,
                now=now,
                revision=revisions.get(account.pk, 0),
                lines=lines.get(draft.pk, []),
                usage=usage.get(draft.pk, []),
            )
            ready.append((draft, plan, account))
    if not ready:
        return []

    ready.sort(key=lambda item: (item[0].period_start, item[0].account_id))
    by_series: dict[tuple[int, int], list[Invoice]] = defaultdict(list)
    for invoice, _, _ in ready:
        invoice.issue_date = now.astimezone(book_zone(invoice.issuer_book)).date()
        by_series[(invoice.issuer_book_id, invoice.issue_date.year)].append(invoice)
    for (_, year), invoices in sorted(by_series.items()):
        book = invoices[0].issuer_book
        for invoice, sequence in zip(
            invoices, numbers_take(book=book, series="INV", year=year, count=len(invoices)), strict=True
        ):
            invoice.number = invoice_number(book, year, sequence)
    stamp = timezone.now()
    for invoice, _, _ in ready:
        invoice.status = InvoiceStatus.ISSUED
        invoice.issued_at = now
        invoice.updated_at = stamp
    with connection.cursor() as cursor:
        # One UPDATE ... FROM unnest for the chunk (bulk_update's CASE per row costs ~10x more).
        cursor.execute(
            """
            UPDATE settlement_invoice AS i
            SET number = u.number, status = %s, issue_date = u.issue_date, issued_at = %s, updated_at = %s
            FROM unnest(%s::bigint[], %s::text[], %s::date[]) AS u(id, number, issue_date)
            WHERE i.id = u.id
            """,
            [
                InvoiceStatus.ISSUED.value,
                now,
                stamp,
                [invoice.pk for invoice, _, _ in ready],
                [invoice.number for invoice, _, _ in ready],
                [invoice.issue_date for invoice, _, _ in ready],
            ],
        )
    for invoice, plan, _ in ready:
        if plan.charge_ids:
            ManualCharge.objects.filter(pk__in=plan.charge_ids).update(invoice=invoice)
    _invoice_post(issued=[(invoice, account) for invoice, _, account in ready])
    paying = set(
        Payment.objects.filter(account_id__in=[a.pk for _, _, a in ready]).values_list(
            "account_id", flat=True
        )
    )
    for invoice, _, account in ready:
        if account.pk in paying:
            credit_balance_apply(account=account, invoice=invoice, now=now)
    account_ids = sorted({a.pk for _, _, a in ready})
    credit_states_refresh_on_commit(account_ids=account_ids)
    invoices_issued_emit(issued=[(invoice, account) for invoice, _, account in ready])  # webhooks, on commit
    return [invoice for invoice, _, _ in ready]


def _invoice_post(*, issued: Sequence[tuple[Invoice, Any]]) -> None:
    """Post issued invoices: in the issuer's book receivables against revenue and tax payable; in
    the payer's own book (if it keeps one) cost of sales against the payable to its parent. One
    `entries_post` batch per book."""
    entries: dict[int, tuple[Book, list[EntryDraft]]] = {}

    def add(book: Book, draft: EntryDraft) -> None:
        entries.setdefault(book.pk, (book, []))[1].append(draft)

    for invoice, account in issued:
        cur, cp = invoice.currency, f"account:{account.code}"
        if invoice.total <= 0:
            continue
        legs = [debit("receivables", invoice.total, cur, cp)]
        if invoice.subtotal > 0:
            legs.append(credit("revenue", invoice.subtotal, cur, cp))
        if invoice.tax > 0:
            legs.append(credit("tax_payable", invoice.tax, cur))
        key = f"invoice:{invoice.pk}"
        at = invoice.issued_at or invoice.drafted_at
        add(
            invoice.issuer_book,
            EntryDraft(
                idempotency_key=key,
                occurred_at=at,
                legs=legs,
                description=f"Invoice {invoice.number} to {account.code} for {invoice.label}",
                source_type="invoice",
                source_id=str(invoice.pk),
            ),
        )
        if account.own_book_id is not None:
            upstream = upstream_counterparty(account)
            add(
                account.own_book,
                EntryDraft(
                    idempotency_key=key,
                    occurred_at=at,
                    legs=[
                        debit("cost_of_sales", invoice.total, cur, upstream),
                        credit("upstream_payables", invoice.total, cur, upstream),
                    ],
                    description=f"Invoice {invoice.number} from {upstream} for {invoice.label}",
                    source_type="invoice",
                    source_id=str(invoice.pk),
                ),
            )
    for _, (book, drafts) in sorted(entries.items()):
        entries_post(book=book, drafts=drafts)


ISSUE_CHUNK_SIZE = 200


def drafts_issue_due(*, book: Book, now: datetime, chunk_size: int | None = None) -> list[Invoice]:
    """Bring the book's drafts up to date (the close), then issue every draft whose period ended
    grace_days or more before `now`, in chunks of drafts (one transaction each) in period then
    account order, so a crash loses at most the chunk in flight and a rerun numbers on from there."""
    from settlement.services.close import CHUNK_ENV, close_run, pause_for_crash_tests

    if chunk_size is None:
        chunk_size = int(os.environ.get(CHUNK_ENV) or ISSUE_CHUNK_SIZE)
    close_run(book=book, now=now)
    due = [
        pk
        for pk, kind, start in Invoice.objects.filter(issuer_book=book, status=InvoiceStatus.DRAFT)
        .order_by("period_start", "account_id")
        .values_list("pk", "period_kind", "period_start")
        if issue_due_at(period_of(kind, start), book) <= now
    ]
    issued: list[Invoice] = []
    for offset in range(0, len(due), chunk_size):
        issued.extend(invoices_issue(invoice_ids=due[offset : offset + chunk_size], now=now))
        pause_for_crash_tests()
    return issued


def invoice_status_settle(invoice: Invoice) -> None:
    """Set paid / partially_paid / issued from the amounts (not for void or written-off ones)."""
    if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID, InvoiceStatus.WRITTEN_OFF):
        return
    if invoice.open_amount <= 0:
        # Settled: by payments (paid), or wholly by credit notes with nothing paid (void).
        invoice.status = InvoiceStatus.PAID if invoice.paid_amount > 0 else InvoiceStatus.VOID
    elif invoice.paid_amount > 0:
        invoice.status = InvoiceStatus.PARTIALLY_PAID
    else:
        invoice.status = InvoiceStatus.ISSUED
