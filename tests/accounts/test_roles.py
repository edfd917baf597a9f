"""Finance roles in the admin (accounts/roles.py): what a clerk, a controller and an auditor can see
and do, that a staff user without a role sees nothing, and that the audit trail names who acted."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from accounts.models import Account, AuditRecord
from accounts.roles import AUDITOR, FINANCE_CLERK, FINANCE_CONTROLLER, roles_sync
from settlement.models import CreditNote, Invoice, InvoiceStatus, ManualCharge, Payment, WriteOff
from settlement.services.close import close_run
from tests.settlement.test_close_world import NOV_1, october_usage, world_build

pytestmark = pytest.mark.django_db

D = Decimal


def staff_client(username: str, *roles: str) -> tuple[Client, object]:
    user = get_user_model().objects.create_user(username=username, password="x", is_staff=True)
    user.groups.set(Group.objects.filter(name__in=roles))
    client = Client()
    client.force_login(user)
    return client, user


def granted(role: str) -> set[str]:
    """The role's permissions other than view_*, as app_label.codename."""
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=role).permissions.select_related("content_type")
        if not p.codename.startswith("view_")
    }


def test_the_migration_creates_the_three_roles_with_exactly_their_grants() -> None:
    clerk = {
        "settlement.add_payment",
        "accounts.add_topup",
        "settlement.add_manualcharge",
        "settlement.change_invoice",
    }
    assert granted(FINANCE_CLERK) == clerk
    assert granted(FINANCE_CONTROLLER) == clerk | {
        "settlement.write_off_invoice",
        "settlement.add_creditnote",
        "settlement.add_provisionmatrix",
        "accounts.add_account",
        "accounts.change_account",
        "accounts.add_pricelist",
        "accounts.add_apikey",
        "accounts.change_apikey",
    }
    assert granted(AUDITOR) == set()
    # The auditor reads every model of the four finance apps, the staff list and the admin's log.
    finance_views = Permission.objects.filter(
        content_type__app_label__in=["ledger", "procurement", "accounts", "settlement"],
        codename__startswith="view_",
    )
    auditor = Group.objects.get(name=AUDITOR).permissions
    assert set(finance_views) <= set(auditor.all())
    assert auditor.filter(codename__in=["view_user", "view_group", "view_logentry"]).count() == 3


def test_roles_sync_is_idempotent_and_takes_back_hand_made_grants() -> None:
    first = roles_sync()
    assert roles_sync() == first
    clerk = Group.objects.get(name=FINANCE_CLERK)
    clerk.permissions.add(Permission.objects.get(codename="write_off_invoice"))
    roles_sync()
    assert "settlement.write_off_invoice" not in granted(FINANCE_CLERK)
    # A deleted role group comes back on the next sync (it also runs after every migrate).
    Group.objects.filter(name=AUDITOR).delete()
    assert roles_sync()[AUDITOR] == first[AUDITOR]


def test_a_staff_user_without_a_role_sees_nothing() -> None:
    client, _ = staff_client("nobody")
    response = client.get("/admin/")
    assert response.status_code == 200
    assert response.context["app_list"] == []
    for url in ("/admin/settlement/invoice/", "/admin/accounts/account/", "/admin/ledger/journalentry/"):
        assert client.get(url).status_code == 403


def test_the_auditor_reads_every_page_and_can_add_or_change_nothing() -> None:
    client, _ = staff_client("audrey", AUDITOR)
    for model in admin.site._registry:
        meta = model._meta
        url = f"/admin/{meta.app_label}/{meta.model_name}/"
        assert client.get(url).status_code == 200, url
        assert client.get(url + "add/").status_code == 403, url
    world = world_build()
    response = client.get(f"/admin/accounts/account/{world.acme.pk}/change/")
    assert response.status_code == 200 and response.context["has_change_permission"] is False
    response = client.post(
        f"/admin/accounts/account/{world.acme.pk}/change/", {"credit_limit": "999999", "name": "x"}
    )
    assert response.status_code == 403
    # No "issue" or "write off" among the invoice list's actions: only the CSV export.
    actions = client.get("/admin/settlement/invoice/").context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["export_csv"]
    # Nor "revoke" on API keys: the key list offers no action at all.
    assert client.get("/admin/accounts/apikey/").context["action_form"] is None


def test_the_clerk_records_payments_and_charges_and_issues_drafts_but_writes_nothing_off() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    close_run(book=world.beta.own_book, now=NOV_1)
    draft = Invoice.objects.get(account=world.acme)
    client, clerk = staff_client("clara", FINANCE_CLERK)

    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get("/admin/settlement/provisionmatrix/add/").status_code == 403
    assert client.get("/admin/accounts/pricelist/add/").status_code == 403
    assert client.get("/admin/settlement/creditnote/add/").status_code == 403

    # Issue the draft from the list: acme's October invoice of 1855.00 (see tests/settlement/test_close.py).
    response = client.post(
        "/admin/settlement/invoice/", {"action": "issue_selected", "_selected_action": [draft.pk]}
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.ISSUED and draft.total == D("1855")
    trail = AuditRecord.objects.get(action="invoice.issue")
    assert (trail.actor, trail.object_id, trail.after["number"]) == (clerk, str(draft.pk), draft.number)

    # A payment of 1000.00 against it, through the admin's add form and the payment service.
    response = client.post(
        "/admin/settlement/payment/add/",
        {
            "account": world.acme.pk,
            "amount": "1000.00",
            "received_at_0": "2026-11-20",
            "received_at_1": "10:00:00",
            "reference": "WIRE-77",
            "periods": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    payment = Payment.objects.get(reference="WIRE-77")
    draft.refresh_from_db()
    # 1855.00 - 1000.00 = 855.00 still open.
    assert (payment.amount, draft.paid_amount, draft.open_amount) == (D("1000"), D("1000"), D("855"))
    assert AuditRecord.objects.get(action="payment.record").actor == clerk

    response = client.post(
        "/admin/settlement/manualcharge/add/",
        {
            "account": world.acme.pk,
            "description": "Onboarding",
            "amount": "250.00",
            "at_0": "2026-11-05",
            "at_1": "00:00:00",
            "reference": "",
        },
    )
    assert response.status_code == 302
    assert ManualCharge.objects.get(description="Onboarding").amount == D("250")
    assert AuditRecord.objects.get(action="manual_charge.record").actor == clerk

    # The write-off action is not offered to a clerk; posting it anyway does nothing.
    client.post(
        "/admin/settlement/invoice/", {"action": "write_off_selected", "_selected_action": [draft.pk]}
    )
    assert not WriteOff.objects.exists()
    # Nor may a clerk change a credit limit.
    assert (
        client.post(f"/admin/accounts/account/{world.acme.pk}/change/", {"credit_limit": "1"}).status_code
        == 403
    )


def test_the_controller_writes_off_and_changes_limits_and_the_trail_names_them() -> None:
    world = world_build()
    october_usage(world, devsolo_calls=10)
    close_run(book=world.beta.own_book, now=NOV_1)
    from settlement.services.invoicing import invoice_issue

    invoice = invoice_issue(invoice=Invoice.objects.get(account=world.acme), now=NOV_1)
    client, controller = staff_client("conrad", FINANCE_CONTROLLER)
    actions = client.get("/admin/accounts/apikey/").context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["revoke_keys"]
    for url in (
        "/admin/settlement/provisionmatrix/add/",
        "/admin/accounts/pricelist/add/",
        "/admin/settlement/payment/add/",
    ):
        assert client.get(url).status_code == 200, url

    # acme's credit limit from 10,000 to 12,500 through the account form (account_update).
    acme = world.acme
    response = client.post(
        f"/admin/accounts/account/{acme.pk}/change/",
        {
            "name": acme.name,
            "kind": acme.kind,
            "terms": acme.terms,
            "net_days": acme.net_days,
            "credit_limit": "12500.00",
            "status": acme.status,
            "tax_rate": acme.tax_rate,
            "commitment": acme.commitment,
            "children-TOTAL_FORMS": "0",
            "children-INITIAL_FORMS": "0",
            "price_lists-TOTAL_FORMS": "0",
            "price_lists-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Account.objects.get(pk=acme.pk).credit_limit == D("12500")
    change = AuditRecord.objects.filter(object_type="account", object_id=str(acme.pk)).order_by("-id")[0]
    assert change.actor == controller
    assert (D(change.before["credit_limit"]), D(change.after["credit_limit"])) == (D("10000"), D("12500"))

    # A credit note of 100.00 for a disputed day, through the add form (credit_note_issue); the same
    # form submitted twice (same hidden key) makes one note.
    form = {"invoice": invoice.pk, "amount": "100.00", "reason": "Outage on 14 Oct", "idempotency_key": "k1"}
    assert client.post("/admin/settlement/creditnote/add/", form).status_code == 302
    assert client.post("/admin/settlement/creditnote/add/", form).status_code == 302
    note = CreditNote.objects.get(invoice=invoice)
    assert note.total == D("100") and AuditRecord.objects.get(action="credit_note.issue").actor == controller

    # The remaining 1855.00 - 100.00 = 1755.00 written off from the list; no allowance was
    # provisioned, so all of it is bad-debt expense, and the write-off names the controller.
    response = client.post(
        "/admin/settlement/invoice/", {"action": "write_off_selected", "_selected_action": [invoice.pk]}
    )
    assert response.status_code == 302
    write_off = WriteOff.objects.get(invoice=invoice)
    assert (write_off.amount, write_off.expensed, write_off.by) == (D("1755"), D("1755"), controller)
    assert "conrad" in write_off.entry.description
    assert datetime.now(UTC) >= write_off.at
