"""Admin list pages stay fast at scale: the invoice list costs the same number of queries with 60
invoices as with 100,000, and no list page follows a foreign key row by row (N+1)."""

from __future__ import annotations

import time

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import ForeignKey
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.services import account_create
from ledger.services import book_create
from settlement.models import Invoice

pytestmark = pytest.mark.django_db

ACCOUNTS = 100
MONTHS = 1000  # 100 accounts x 1000 monthly periods = 100,000 invoices


@pytest.fixture
def superuser_client() -> Client:
    user = get_user_model().objects.create_superuser(username="root", password="x", email="r@example.com")
    client = Client()
    client.force_login(user)
    return client


def invoices_fill(*, book_id: int, account_ids: list[int], months: int, first_month: int = 0) -> None:
    """Copy one real invoice row `len(account_ids) x months` times in one INSERT ... SELECT: every
    column comes from the template (so a column added later is filled too) except the keys of the
    (account, period) uniqueness, the period's label and dates, and the number of issued ones."""
    fields = [f.column for f in Invoice._meta.concrete_fields if f.column != "id"]
    computed = {
        "account_id": "a.id",
        "period_start": "p.start",
        "period_end": "(p.start + interval '1 month' - interval '1 day')::date",
        "due_date": "(p.start + interval '2 months')::date",
        "label": "to_char(p.start, 'YYYY-MM')",
        # Two invoices in three are issued (numbered), the rest drafts.
        "status": "CASE WHEN mod(a.id + p.n, 3) = 0 THEN 'draft' ELSE 'issued' END",
        "number": "CASE WHEN mod(a.id + p.n, 3) = 0 THEN NULL ELSE 'INV-' || a.id || '-' || p.n END",
    }
    select = ", ".join(computed.get(c, f"t.{c}") for c in fields)
    template = Invoice.objects.filter(issuer_book_id=book_id).order_by("pk").values_list("pk", flat=True)[0]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO settlement_invoice ({", ".join(fields)})
            SELECT {select}
            FROM settlement_invoice t,
                 unnest(%s::bigint[]) AS a(id),
                 LATERAL (SELECT g AS n, (date '1900-01-01' + g * interval '1 month')::date AS start
                          FROM generate_series(%s, %s) g) p
            WHERE t.id = %s
            """,
            [account_ids, first_month, first_month + months - 1, template],
        )


def test_the_invoice_list_costs_the_same_queries_at_60_and_at_100000_invoices(
    superuser_client: Client,
) -> None:
    book = book_create(code="platform", name="Platform", currency="USD")
    accounts = [
        account_create(
            root_book=book,
            code=f"c{i:03d}",
            name=f"Customer {i}",
            kind="customer",
            currency="USD",
            terms="monthly",
        )
        for i in range(ACCOUNTS)
    ]
    template = Invoice.objects.create(
        issuer_book=book,
        account=accounts[0],
        period_kind="month",
        period_start="1800-01-01",
        period_end="1800-01-31",
        label="1800-01",
        currency="USD",
        due_date="1800-03-01",
        drafted_at="1800-02-01T00:00:00Z",
    )
    ids = [a.pk for a in accounts]
    # 60 rows: more than one page of 50.
    invoices_fill(book_id=book.pk, account_ids=ids[:60], months=1)

    def list_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = superuser_client.get("/admin/settlement/invoice/")
        assert response.status_code == 200
        assert len(response.context["cl"].result_list) == 50
        return len(queries)

    small = list_page()
    started = time.monotonic()
    invoices_fill(book_id=book.pk, account_ids=ids[60:], months=1)
    invoices_fill(book_id=book.pk, account_ids=ids, months=MONTHS - 1, first_month=1)
    template.delete()  # a draft: the guard lets it go
    assert Invoice.objects.count() == ACCOUNTS * MONTHS == 100_000
    filled_in = time.monotonic() - started

    large = list_page()
    # Session, user, the page's COUNT, its 50 rows with account and book joined, the filters'
    # choices: a fixed number, whatever the row count.
    assert large == small, (small, large)
    assert large <= 8  # 6 today
    # Filtered and searched pages too (no full-table count beside the filtered one).
    with CaptureQueriesContext(connection) as queries:
        response = superuser_client.get("/admin/settlement/invoice/?status__exact=issued&q=c042")
    assert response.status_code == 200 and len(queries) <= large + 1
    assert filled_in < 15


def test_no_list_page_follows_a_foreign_key_row_by_row() -> None:
    """Every foreign key shown as a column is joined in the list's query (list_select_related),
    so a page of 50 rows is one query, not 51."""
    request = RequestFactory().get("/admin/")
    request.user = get_user_model()(username="root", is_superuser=True, is_staff=True, is_active=True)
    missing = []
    for model, model_admin in admin.site._registry.items():
        changelist = model_admin.get_changelist_instance(request)
        selected = changelist.get_queryset(request).query.select_related
        for name in model_admin.get_list_display(request):
            if not isinstance(name, str):
                continue
            try:
                field = model._meta.get_field(name)
            except Exception:
                continue
            if not isinstance(field, ForeignKey):
                continue
            joined = (selected is True and not field.null) or (
                isinstance(selected, dict) and name in selected
            )
            if not joined:
                missing.append(f"{model._meta.label}.{name}")
    assert missing == []
