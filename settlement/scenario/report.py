"""The scenario report (scenario-format.md, "The JSON report"): one function per section.

Each section reads through selectors (or ledger balances) as of the report time and returns the
keys it owns; `SECTIONS` lists them in report order, so a later issue adds its section by writing
one function and listing it. A section whose selectors have not landed yet returns nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from accounts.selectors import wallet_balance
from distributor.money import normalize, round_minor
from ledger.models import AccountBalance, Book
from settlement.risk_selectors import EXPOSURE_FIELDS, aging, allowance_balance, exposure
from settlement.scenario.runner import ScenarioRun, scenario_books
from settlement.selectors import margins
from settlement.services.credit_control import authorization_for, credit_states_refresh


@dataclass(frozen=True, slots=True)
class ReportContext:
    run: ScenarioRun
    as_of: datetime
    books: list[Book]  # the root first, then each distributor's own book, in creation order
    book_currencies: list[tuple[Book, str]]  # every book and currency it holds (base currency at least)


def _book_currencies(books: list[Book]) -> list[tuple[Book, str]]:
    held: dict[int, set[str]] = {b.pk: {b.currency} for b in books}
    rows = (
        AccountBalance.objects.filter(ledger_account__book__in=books)
        .values_list("ledger_account__book_id", "currency")
        .distinct()
    )
    for book_id, currency in rows:
        held[book_id].add(currency)
    # The base currency first, then the others alphabetically.
    return [(b, c) for b in books for c in sorted(held[b.pk], key=lambda c: (c != b.currency, c))]


def section_as_of(ctx: ReportContext) -> dict[str, Any]:
    return {"as_of": ctx.as_of}


def _scenario_accounts(ctx: ReportContext) -> list[Any]:
    accounts = ctx.run.accounts
    return [accounts[a.code] for a in ctx.run.scenario.accounts if a.code in accounts]


def section_invoices(ctx: ReportContext) -> dict[str, Any]:
    """Every invoice of the scenario's accounts with its printed lines (rounded amounts)."""
    from settlement.models import Invoice

    invoices = (
        Invoice.objects.filter(account__in=_scenario_accounts(ctx))
        .select_related("issuer_book", "account")
        .prefetch_related("lines")
        .order_by("period_start", "issuer_book_id", "account__code")
    )
    rows = []
    for invoice in invoices:
        lines: list[dict[str, Any]] = []
        for line in invoice.lines.all():
            if line.model_code:
                printed: dict[str, Any] = {
                    "model": line.model_code,
                    "class": line.token_class,
                    "tokens": line.tokens,
                    "unit_price": line.unit_price,
                    "amount": line.amount,
                }
            else:
                printed = {"description": line.description, "amount": line.amount}
            if line.late:
                printed["late"] = True
            lines.append(printed)
        rows.append(
            {
                "issuer": invoice.issuer_book.code,
                "account": invoice.account.code,
                "period": invoice.label,
                "number": invoice.number,
                "currency": invoice.currency,
                "status": invoice.status,
                "due": invoice.due_date,
                "subtotal": invoice.subtotal,
                "tax": invoice.tax,
                "total": invoice.total,
                "open": invoice.open_amount,
                "lines": lines,
            }
        )
    return {"invoices": rows}


def section_statements(ctx: ReportContext) -> dict[str, Any]:
    """Prepaid accounts' monthly statements; the figures are kept exact and printed rounded (§2)."""
    from settlement.models import Statement

    rows = []
    for st in (
        Statement.objects.filter(account__in=_scenario_accounts(ctx))
        .select_related("account")
        .order_by("period_start", "account__code")
    ):
        rows.append(
            {
                "account": st.account.code,
                "period": st.label,
                "currency": st.currency,
                **{
                    name: round_minor(getattr(st, name), st.currency)
                    for name in ("opening", "topups", "usage", "closing")
                },
            }
        )
    return {"statements": rows}


def section_wallets(ctx: ReportContext) -> dict[str, Any]:
    """Prepaid accounts' exact deposit balances."""
    return {
        "wallets": {
            a.code: wallet_balance(account=a) for a in _scenario_accounts(ctx) if a.terms == "prepaid"
        }
    }


def section_ingestion(ctx: ReportContext) -> dict[str, Any]:
    return {"ingestion": dict(ctx.run.ingestion)}


def section_margins(ctx: ReportContext) -> dict[str, Any]:
    rows = []
    for book in ctx.books:
        for row in margins(book=book):
            rows.append(
                {
                    "book": row.book,
                    "period": row.period,
                    "model": row.model,
                    "currency": row.currency,
                    "revenue": row.revenue,
                    "cost": row.cost,
                    "margin": row.margin,
                    "negative": row.negative,
                }
            )
    return {"margins": rows}


def section_exposure(ctx: ReportContext) -> dict[str, Any]:
    """Per book and currency: the prepayment exposure and net funding position (§9)."""
    rows = []
    for book, currency in ctx.book_currencies:
        figures = exposure(book=book, currency=currency, as_of=ctx.as_of)
        rows.append(
            {"book": book.code, "currency": currency}
            | {name: getattr(figures, name) for name in EXPOSURE_FIELDS}
        )
    return {"exposure": rows}


def section_aging(ctx: ReportContext) -> dict[str, Any]:
    """Open receivables by days past due (§9), per book and currency."""
    rows = []
    for book, currency in ctx.book_currencies:
        figures = aging(book=book, currency=currency, as_of=ctx.as_of)
        rows.append({"book": book.code, "currency": currency} | dict(figures.buckets))
    return {"aging": rows}


def section_allowance(ctx: ReportContext) -> dict[str, Any]:
    """The allowance for doubtful accounts: its ledger balance after the last provisioning (§11.10)."""
    return {
        "allowance": [
            {
                "book": book.code,
                "currency": currency,
                "amount": allowance_balance(book=book, currency=currency),
            }
            for book, currency in ctx.book_currencies
        ]
    }


def section_authorize(ctx: ReportContext) -> dict[str, Any]:
    """What the gateway would hear for each account at the report time (§6). The cache is refreshed
    first: the report must not depend on what an earlier run left in it."""
    accounts = _scenario_accounts(ctx)
    credit_states_refresh(account_ids=[a.pk for a in accounts])
    answers = {}
    for account in accounts:
        answer = authorization_for(account=type(account).objects.get(pk=account.pk))
        answers[account.code] = {
            "allowed": answer["allowed"],
            "reason": answer["reason"],
            "available": answer["available"],
        }
    return {"authorize": answers}


def section_trial_balance(ctx: ReportContext) -> dict[str, Any]:
    """Per book and currency, all debits and all credits posted; the difference must be zero (§8)."""
    totals = {
        (row["ledger_account__book_id"], row["currency"]): (row["total_debits"], row["total_credits"])
        for row in AccountBalance.objects.filter(ledger_account__book__in=ctx.books)
        .values("ledger_account__book_id", "currency")
        .annotate(total_debits=Sum("debits"), total_credits=Sum("credits"))
    }
    rows = []
    for book, currency in ctx.book_currencies:
        debits, credits = totals.get((book.pk, currency), (Decimal(0), Decimal(0)))
        rows.append(
            {
                "book": book.code,
                "currency": currency,
                "debits": debits,
                "credits": credits,
                "difference": debits - credits,
            }
        )
    return {"trial_balance": rows}


SECTIONS: list[Callable[[ReportContext], dict[str, Any]]] = [
    section_as_of,
    section_invoices,
    section_statements,
    section_wallets,
    section_ingestion,
    section_margins,
    section_exposure,
    section_aging,
    section_allowance,
    section_authorize,
    section_trial_balance,
]


def report_build(*, run: ScenarioRun) -> dict[str, Any]:
    """The report as plain data (Decimals, datetimes); `report_json`/`report_text` render it."""
    books = scenario_books(run)
    ctx = ReportContext(run=run, as_of=run.as_of, books=books, book_currencies=_book_currencies(books))
    report: dict[str, Any] = {}
    for section in SECTIONS:
        report.update(section(ctx))
    return report


def _plain(value: Any) -> Any:
    """Amounts as decimal strings without exponent; times and dates in ISO 8601."""
    if isinstance(value, Decimal):
        return normalize(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(_plain(report), indent=1)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and not isinstance(row[k], list | dict)]
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for row, rendered in zip(rows, cells, strict=True):
        lines.append("  " + "  ".join(_align(v, w) for v, w in zip(rendered, widths, strict=True)))
        for key, nested in row.items():
            if isinstance(nested, list) and nested and all(isinstance(n, dict) for n in nested):
                lines += ["    " + line for line in [f"{key}:", *_table(nested)]]
    return lines


def _align(text: str, width: int) -> str:
    """Figures line up on the right, names on the left."""
    try:
        Decimal(text)
    except ArithmeticError:
        return text.ljust(width)
    return text.rjust(width)


def _cell(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, bool):
        return "yes" if plain else "no"
    return str(plain)


def report_text(report: dict[str, Any]) -> str:
    """The same figures as the JSON, laid out for a person: one block per section."""
    lines: list[str] = []
    for key, value in report.items():
        title = key.replace("_", " ")
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            lines += ["", f"{title.capitalize()}", *(_table(value) if value else ["  (none)"])]
        elif isinstance(value, dict):
            lines += ["", f"{title.capitalize()}"]
            for name, item in value.items():
                if isinstance(item, dict):
                    lines.append(f"  {name}: " + ", ".join(f"{k} {_cell(v)}" for k, v in item.items()))
                else:
                    lines.append(f"  {name}: {_cell(item)}")
        else:
            lines.append(f"{title.capitalize()}: {_cell(value)}")
    return "\n".join(lines).strip() + "\n"
