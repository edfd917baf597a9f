"""The scenario report (scenario-format.md, "The JSON report"): one function per section.

Each section reads through selectors (or ledger balances) as of the report time and returns the
keys it owns; `SECTIONS` lists them in report order, so a later issue adds its section by writing
one function and listing it. A section whose selectors have not landed yet returns nothing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from distributor.money import normalize
from ledger.models import AccountBalance, Book
from settlement.scenario.runner import ScenarioRun


@dataclass(frozen=True, slots=True)
class ReportContext:
    run: ScenarioRun
    as_of: datetime
    books: list[Book]  # the root first, then each distributor's own book, in creation order
    book_currencies: list[tuple[Book, str]]  # every book and currency it holds (base currency at least)


def _selector(module: str, name: str) -> Callable[..., Any] | None:
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if callable(found) else None


def _scenario_books(run: ScenarioRun) -> list[Book]:
    # A distributor's own book carries the distributor's code (accounts contract), so the scenario's
    # books are found by code: this keeps a --keep run's report off unrelated books in the database.
    codes = {run.scenario.book.code} | {a.code for a in run.scenario.accounts if a.kind == "distributor"}
    books = list(Book.objects.filter(code__in=codes).order_by("id"))
    return sorted(books, key=lambda b: (b.code != run.scenario.book.code, b.pk))


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


def section_exposure(ctx: ReportContext) -> dict[str, Any]:
    """Per book and currency: what is prepaid upstream and what is owed upstream (§9).
    Later issues add unbilled, receivables, deposits, gross and net to these rows."""
    prepaid = _selector("procurement.selectors", "upstream_prepaid_at_cost")
    payables = _selector("procurement.selectors", "upstream_payables")
    if prepaid is None or payables is None:
        return {}
    rows = [
        {
            "book": book.code,
            "currency": currency,
            "upstream_prepaid": prepaid(book=book, currency=currency, as_of=ctx.as_of),
            "upstream_payables": payables(book=book, currency=currency),
        }
        for book, currency in ctx.book_currencies
    ]
    return {"exposure": rows}


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
    section_exposure,
    section_trial_balance,
]


def report_build(*, run: ScenarioRun) -> dict[str, Any]:
    """The report as plain data (Decimals, datetimes); `report_json`/`report_text` render it."""
    books = _scenario_books(run)
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
