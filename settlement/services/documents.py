"""Billing documents: the invoice PDF (reportlab), a top-up receipt PDF, a statement PDF, and the
CSV of a book's invoices and lines for a period. Amounts print rounded to the minor unit."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from distributor.money import normalize, round_minor
from settlement.models import CreditNote, Invoice, InvoiceLineKind, Statement


def _money(amount: Decimal, currency: str) -> str:
    return f"{round_minor(amount, currency):,} {currency}"


def _pdf(title: str, blocks: list[Any]) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=title, leftMargin=18 * mm, rightMargin=18 * mm)
    doc.build(blocks)
    return buffer.getvalue()


def _table(rows: list[list[str]], widths: list[float] | None = None) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
            ]
        )
    )
    return table


def invoice_pdf(*, invoice: Invoice) -> bytes:
    """Issuer and customer, number, dates, lines, tax, total and amount due."""
    styles = getSampleStyleSheet()
    cur = invoice.currency
    issuer = invoice.issuer_book
    title = f"Invoice {invoice.number}" if invoice.number else f"Draft invoice {invoice.label}"
    head = [
        Paragraph(title, styles["Title"]),
        Paragraph(f"From: {issuer.name} ({issuer.code})", styles["Normal"]),
        Paragraph(f"To: {invoice.account.name} ({invoice.account.code})", styles["Normal"]),
        Paragraph(
            f"Period: {invoice.label} ({invoice.period_start} to {invoice.period_end}) &nbsp; "
            f"Issued: {invoice.issue_date or 'not yet'} &nbsp; Due: {invoice.due_date}",
            styles["Normal"],
        ),
        Spacer(1, 6 * mm),
    ]
    rows = [["Description", "Class", "Tokens", "Unit price / 1M", "Amount"]]
    for line in invoice.lines.order_by("position"):
        if line.kind == InvoiceLineKind.USAGE:
            rows.append(
                [
                    line.model_code + (" (late)" if line.late else ""),
                    line.token_class,
                    f"{line.tokens:,}",
                    normalize(line.unit_price or Decimal(0)),
                    _money(line.amount, cur),
                ]
            )
        else:
            rows.append([line.description, "", "", "", _money(line.amount, cur)])
    rows += [
        ["Subtotal", "", "", "", _money(invoice.subtotal, cur)],
        [f"Tax ({normalize(invoice.tax_rate * 100)}%)", "", "", "", _money(invoice.tax, cur)],
        ["Total", "", "", "", _money(invoice.total, cur)],
        ["Amount due", "", "", "", _money(invoice.open_amount if invoice.number else invoice.total, cur)],
    ]
    return _pdf(title, [*head, _table(rows, [62 * mm, 24 * mm, 30 * mm, 30 * mm, 30 * mm])])


def credit_note_pdf(*, note: CreditNote) -> bytes:
    """Issuer and customer, the note's number and date, the invoice it corrects, the reason, and
    the amounts credited."""
    styles = getSampleStyleSheet()
    cur = note.currency
    invoice = note.invoice
    title = f"Credit note {note.number}"
    head = [
        Paragraph(title, styles["Title"]),
        Paragraph(f"From: {note.issuer_book.name} ({note.issuer_book.code})", styles["Normal"]),
        Paragraph(f"To: {invoice.account.name} ({invoice.account.code})", styles["Normal"]),
        Paragraph(
            f"Issued: {note.issue_date} &nbsp; Corrects invoice {invoice.number} ({invoice.label})",
            styles["Normal"],
        ),
        Paragraph(f"Reason: {escape(note.reason)}", styles["Normal"]),
        Spacer(1, 6 * mm),
    ]
    rows = [
        ["", "Amount"],
        ["Subtotal credited", _money(note.subtotal, cur)],
        ["Tax credited", _money(note.tax, cur)],
        ["Total credited", _money(note.total, cur)],
        [f"Invoice {invoice.number} still open", _money(invoice.open_amount, cur)],
    ]
    return _pdf(title, [*head, _table(rows, [120 * mm, 50 * mm])])


def statement_pdf(*, statement: Statement) -> bytes:
    styles = getSampleStyleSheet()
    cur = statement.currency
    rows = [
        ["", "", "Amount"],
        ["Opening balance", "", _money(statement.opening, cur)],
        ["Top-ups", "", _money(statement.topups, cur)],
        ["Usage", "", _money(statement.usage, cur)],
        *[["", f"  {model}", _money(Decimal(v), cur)] for model, v in statement.usage_by_model.items()],
        ["Closing balance", "", _money(statement.closing, cur)],
    ]
    title = f"Statement {statement.label}"
    return _pdf(
        title,
        [
            Paragraph(title, styles["Title"]),
            Paragraph(
                f"{statement.book.name} to {statement.account.name} ({statement.account.code})",
                styles["Normal"],
            ),
            Spacer(1, 6 * mm),
            _table(rows),
        ],
    )


def topup_receipt_pdf(*, topup: Any) -> bytes:
    """A receipt for a prepaid top-up (accounts.Topup), with its receipt number."""
    styles = getSampleStyleSheet()
    account = topup.account
    title = f"Receipt {topup.receipt_number}"
    rows = [
        ["Received from", "", f"{account.name} ({account.code})"],
        ["Received by", "", account.book.name],
        ["Date", "", topup.at.date().isoformat()],
        ["Reference", "", topup.reference],
        ["Amount", "", _money(topup.amount, topup.currency)],
    ]
    return _pdf(title, [Paragraph(title, styles["Title"]), _table(rows)])


CSV_HEADER = [
    "number",
    "status",
    "issuer",
    "account",
    "period",
    "issue_date",
    "due_date",
    "currency",
    "line",
    "kind",
    "description",
    "model",
    "class",
    "tokens",
    "unit_price",
    "late",
    "amount",
    "subtotal",
    "tax",
    "total",
    "open",
]


def invoices_csv(*, invoices: Iterable[Invoice]) -> str:
    """One row per invoice line, with the invoice's header figures repeated on each."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for inv in invoices:
        head = [
            inv.number or "",
            inv.status,
            inv.issuer_book.code,
            inv.account.code,
            inv.label,
            inv.issue_date or "",
            inv.due_date,
            inv.currency,
        ]
        tail = [inv.subtotal, inv.tax, inv.total, inv.open_amount]
        for line in inv.lines.all():
            writer.writerow(
                [
                    *head,
                    line.position,
                    line.kind,
                    line.description,
                    line.model_code,
                    line.token_class,
                    "" if line.tokens is None else line.tokens,
                    "" if line.unit_price is None else normalize(line.unit_price),
                    "yes" if line.late else "",
                    normalize(line.amount),
                    *[normalize(round_minor(v, inv.currency)) for v in tail],
                ]
            )
    return out.getvalue()
