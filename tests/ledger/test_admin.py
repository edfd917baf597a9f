"""The ledger admin is read-only (§8: corrections are reversals) and its one action reverses entries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from ledger.models import AccountBalance, JournalEntry
from ledger.selectors import account_balance
from ledger.services import exchange_rate_set
from tests.ledger.factories import BookFactory, at, receipt, sale

pytestmark = pytest.mark.django_db

MODELS = ["book", "ledgeraccount", "journalentry", "posting", "accountbalance", "exchangerate"]


@pytest.fixture
def finance() -> Client:
    user = get_user_model().objects.create_superuser(username="finance", password="x", email="f@example.com")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def books() -> None:
    book = BookFactory(code="root")
    for n in range(5):
        sale(book, f"invoice:{n}", "10.00", customer=f"account:c{n}", when=at(5 + n))
    receipt(book, "payment:1", "4.00", customer="account:c1", when=at(20))
    exchange_rate_set(base="USD", quote="CNY", rate=Decimal("7.1"), effective_at=at(1))


@pytest.mark.usefixtures("books")
@pytest.mark.parametrize("model", MODELS)
def test_every_ledger_page_reads_in_a_bounded_number_of_queries(
    finance: Client, model: str, django_assert_max_num_queries: object
) -> None:
    # Sessions, user, count, rows, filters: no query per row (list_select_related).
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        response = finance.get(reverse(f"admin:ledger_{model}_changelist"))
    assert response.status_code == 200
    add = reverse(f"admin:ledger_{model}_add")
    assert add.encode() not in response.content  # no "Add" button, here or in the sidebar
    assert finance.get(add).status_code == 403


@pytest.mark.usefixtures("books")
def test_entries_cannot_be_changed_or_deleted_through_the_admin(finance: Client) -> None:
    entry = JournalEntry.objects.get(idempotency_key="invoice:0")
    page = finance.get(reverse("admin:ledger_journalentry_change", args=[entry.pk]))
    assert page.status_code == 200  # viewable, with its postings inline
    assert b"account:c0" in page.content
    assert b'name="_save"' not in page.content
    assert (
        finance.post(
            reverse("admin:ledger_journalentry_delete", args=[entry.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert JournalEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.usefixtures("books")
def test_search_finds_entries_by_key_description_and_counterparty(finance: Client) -> None:
    url = reverse("admin:ledger_journalentry_changelist")
    assert finance.get(url, {"q": "payment:1"}).context["cl"].result_count == 1
    # c1 was invoiced and paid: two entries name it.
    assert finance.get(url, {"q": "account:c1"}).context["cl"].result_count == 2
    postings = reverse("admin:ledger_posting_changelist")
    # c3's invoice: one leg names c3 (receivables), both legs belong to the entry "invoice:3".
    assert finance.get(postings, {"q": "account:c3"}).context["cl"].result_count == 1
    assert finance.get(postings, {"q": "invoice:3"}).context["cl"].result_count == 2


@pytest.mark.usefixtures("books")
def test_the_reverse_action_reverses_each_entry_once_and_says_so(finance: Client) -> None:
    book = BookFactory._meta.model.objects.get(code="root")
    invoice = JournalEntry.objects.get(idempotency_key="invoice:2")
    url = reverse("admin:ledger_journalentry_changelist")
    response = finance.post(
        url, {"action": "reverse_selected", "_selected_action": [invoice.pk]}, follow=True
    )
    mirror = JournalEntry.objects.get(reverses=invoice)
    assert f"Entry #{invoice.pk} reversed by entry #{mirror.pk}." in response.content.decode()
    assert mirror.description.startswith(f"Reversal of #{invoice.pk}") and mirror.description.endswith(
        "by finance"
    )
    # c2 owed 10.00, now 0.
    assert (
        account_balance(book=book, account_code="receivables", currency="USD", counterparty="account:c2") == 0
    )

    # Again: nothing new, a clear message.
    response = finance.post(
        url, {"action": "reverse_selected", "_selected_action": [invoice.pk]}, follow=True
    )
    assert f"Entry #{invoice.pk} was already reversed by entry #{mirror.pk}." in response.content.decode()
    assert JournalEntry.objects.filter(reverses=invoice).count() == 1
    # 5 sales + 1 payment + 1 reversal.
    assert JournalEntry.objects.count() == 7
    assert AccountBalance.objects.filter(counterparty="account:c2").get().debits == Decimal("10.00")


@pytest.mark.usefixtures("books")
def test_reversing_needs_its_own_permission(finance: Client) -> None:
    clerk = get_user_model().objects.create_user(username="clerk", password="x", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_journalentry"))
    client = Client()
    client.force_login(clerk)
    invoice = JournalEntry.objects.get(idempotency_key="invoice:0")
    url = reverse("admin:ledger_journalentry_changelist")
    assert b"reverse_selected" not in client.get(url).content
    client.post(url, {"action": "reverse_selected", "_selected_action": [invoice.pk]})
    assert not JournalEntry.objects.filter(reverses=invoice).exists()
