"""The database guard on invoice lines (§7) checks whole statements (migration 0006): a statement
that adds, changes or removes any line of an issued invoice is refused as a whole, however many rows
it carries and whichever drafts it also touches; statements on drafts alone still pass."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import IntegrityError

from settlement.models import Invoice, InvoiceLine, InvoiceStatus
from settlement.services.close import close_run
from settlement.services.invoicing import drafts_issue_due
from tests.settlement.test_close_world import NOV_1, World, october_usage, world_build

LINE_COLUMNS = "invoice_id, position, kind, description, model_code, token_class, late, exact_amount, amount"


@pytest.fixture
def world(db: None) -> World:
    w = world_build()
    october_usage(w, devsolo_calls=10)
    return w


def issued_and_draft(world: World) -> tuple[Invoice, Invoice]:
    """Acme's invoice issued by Beta's book; the platform book's October invoices left in draft."""
    close_run(book=world.book, now=NOV_1)
    drafts_issue_due(book=world.beta.own_book, now=NOV_1)
    issued = Invoice.objects.get(account=world.acme)
    draft = Invoice.objects.filter(issuer_book=world.book, status=InvoiceStatus.DRAFT).first()
    assert issued.status == InvoiceStatus.ISSUED and draft is not None
    return issued, draft


def refused(sql: str, params: list[object]) -> None:
    with (
        pytest.raises(IntegrityError, match="the lines of an issued invoice cannot change"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        c.execute(sql, params)


def test_a_multi_row_insert_into_an_issued_invoice_is_refused_whole(world: World) -> None:
    issued, draft = issued_and_draft(world)
    issued_lines = InvoiceLine.objects.filter(invoice=issued).count()
    draft_lines = InvoiceLine.objects.filter(invoice=draft).count()
    # Three rows, all for the issued invoice.
    refused(
        f"INSERT INTO settlement_invoiceline ({LINE_COLUMNS}) VALUES"
        " (%s, 901, 'charge', 'a', '', '', false, 1, 1),"
        " (%s, 902, 'charge', 'b', '', '', false, 2, 2),"
        " (%s, 903, 'charge', 'c', '', '', false, 3, 3)",
        [issued.pk, issued.pk, issued.pk],
    )
    # Two rows for the draft and one for the issued invoice: refused as a whole, the draft's rows too.
    refused(
        f"INSERT INTO settlement_invoiceline ({LINE_COLUMNS}) VALUES"
        " (%s, 901, 'charge', 'a', '', '', false, 1, 1),"
        " (%s, 902, 'charge', 'b', '', '', false, 2, 2),"
        " (%s, 901, 'charge', 'c', '', '', false, 3, 3)",
        [draft.pk, draft.pk, issued.pk],
    )
    # INSERT ... SELECT copying the draft's lines onto the issued invoice (the unnest shape drafting uses).
    refused(
        f"INSERT INTO settlement_invoiceline ({LINE_COLUMNS})"
        " SELECT %s, position + 1000, kind, description, model_code, token_class, late, exact_amount,"
        " amount FROM settlement_invoiceline WHERE invoice_id = %s",
        [issued.pk, draft.pk],
    )
    assert InvoiceLine.objects.filter(invoice=issued).count() == issued_lines
    assert InvoiceLine.objects.filter(invoice=draft).count() == draft_lines


def test_moving_lines_to_or_from_an_issued_invoice_is_refused(world: World) -> None:
    issued, draft = issued_and_draft(world)
    refused(
        "UPDATE settlement_invoiceline SET invoice_id = %s, position = position + 1000 WHERE invoice_id = %s",
        [issued.pk, draft.pk],
    )
    refused(
        "UPDATE settlement_invoiceline SET invoice_id = %s, position = position + 1000 WHERE invoice_id = %s",
        [draft.pk, issued.pk],
    )
    # Deleting the lines of both at once: the issued invoice's lines protect the draft's too.
    refused("DELETE FROM settlement_invoiceline WHERE invoice_id IN (%s, %s)", [draft.pk, issued.pk])
    assert InvoiceLine.objects.filter(invoice=issued).exists()
    assert InvoiceLine.objects.filter(invoice=draft).exists()


def test_statements_on_drafts_alone_still_pass(world: World) -> None:
    _, draft = issued_and_draft(world)
    before = InvoiceLine.objects.filter(invoice=draft).count()
    with connection.cursor() as c:
        c.execute(
            f"INSERT INTO settlement_invoiceline ({LINE_COLUMNS}) VALUES"
            " (%s, 901, 'charge', 'a', '', '', false, 1, 1),"
            " (%s, 902, 'charge', 'b', '', '', false, 2, 2)",
            [draft.pk, draft.pk],
        )
        c.execute("UPDATE settlement_invoiceline SET amount = 5 WHERE invoice_id = %s", [draft.pk])
        assert c.rowcount == before + 2
        c.execute("DELETE FROM settlement_invoiceline WHERE invoice_id = %s", [draft.pk])
        assert c.rowcount == before + 2
    # An empty statement touches no line and passes whatever the invoice.
    with connection.cursor() as c:
        c.execute("DELETE FROM settlement_invoiceline WHERE invoice_id = -1")
