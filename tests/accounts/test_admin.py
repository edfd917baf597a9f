"""The admin goes through the services: rules refused as form errors, changes audited with the user."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import Account, ApiKey, AuditRecord, PriceList, Topup
from accounts.selectors import api_key_authenticate, wallet_balance
from tests.accounts.factories import account, model_with_prices, root_book

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> tuple[Client, object]:
    user = get_user_model().objects.create_superuser(username="finance", password="x", email="f@example.com")
    client = Client()
    client.force_login(user)
    return client, user


ACCOUNT_FORM = {
    "name": "Alpha Reseller",
    "kind": "distributor",
    "currency": "USD",
    "terms": "monthly",
    "net_days": "30",
    "credit_limit": "50000.00",
    "status": "active",
    "tax_rate": "0",
    "commitment": "0",
    "children-TOTAL_FORMS": "0",
    "children-INITIAL_FORMS": "0",
    "price_lists-TOTAL_FORMS": "0",
    "price_lists-INITIAL_FORMS": "0",
}


def test_account_add_and_change_go_through_services(staff) -> None:
    client, user = staff
    root = root_book()
    response = client.post(
        "/admin/accounts/account/add/", {**ACCOUNT_FORM, "code": "alpha", "root_book": root.pk}
    )
    assert response.status_code == 302, response.content
    alpha = Account.objects.get(code="alpha")
    assert alpha.book == root
    # A child of a customer is refused with the service's message, and nothing is saved.
    account(root, "acme", parent=alpha, kind="customer")
    acme = Account.objects.get(code="acme")
    response = client.post(
        "/admin/accounts/account/add/", {**ACCOUNT_FORM, "code": "sub", "parent": acme.pk, "kind": "customer"}
    )
    assert response.status_code == 200
    assert "a customer has no children" in response.content.decode()
    assert not Account.objects.filter(code="sub").exists()

    change = {k: v for k, v in ACCOUNT_FORM.items() if k not in ("currency",)}
    change["children-TOTAL_FORMS"] = change["children-INITIAL_FORMS"] = "1"
    change["children-0-id"] = str(acme.pk)
    change["children-0-parent"] = str(alpha.pk)
    response = client.post(
        f"/admin/accounts/account/{alpha.pk}/change/", {**change, "credit_limit": "60000.00"}
    )
    assert response.status_code == 302, response.content
    alpha.refresh_from_db()
    assert alpha.credit_limit == Decimal("60000")
    record = AuditRecord.objects.get(action="account.update")
    assert record.actor == user and (record.before["credit_limit"], record.after["credit_limit"]) == (
        "50000",
        "60000",
    )
    for page in (
        "/admin/accounts/account/",
        f"/admin/accounts/account/{alpha.pk}/change/",
        "/admin/accounts/auditrecord/",
    ):
        assert client.get(page).status_code == 200


def test_price_list_topup_and_api_key_through_the_admin(staff) -> None:
    client, user = staff
    root = root_book()
    model_with_prices("anthropic", "claude-opus-4.6", input="5.00", output="25.00")
    alpha = account(root, "alpha")
    devsolo = account(root, "devsolo", kind="customer", terms="prepaid")

    response = client.post(
        "/admin/accounts/pricelist/add/",
        {
            "account": alpha.pk,
            "effective_from_0": "2026-01-01",
            "effective_from_1": "00:00:00",
            "rule": "discount",
            "rate": "0.08",
            "overrides_text": "claude-opus-4.6 input 4.80",
        },
    )
    assert response.status_code == 302, response.content
    price_list = PriceList.objects.get(account=alpha)
    assert [(o.model_code, o.token_class, o.unit_price) for o in price_list.overrides.all()] == [
        ("claude-opus-4.6", "input", Decimal("4.80"))
    ]
    assert AuditRecord.objects.get(action="price_list.set").actor == user
    assert client.get(f"/admin/accounts/pricelist/{price_list.pk}/change/").status_code == 200

    response = client.post(
        "/admin/accounts/topup/add/",
        {
            "account": devsolo.pk,
            "amount": "100.00",
            "at_0": "2026-10-01",
            "at_1": "00:00:00",
            "reference": "CARD-1",
        },
        follow=True,
    )
    assert Topup.objects.get().receipt_number == "platform-R2026-000001"
    assert "Receipt platform-R2026-000001" in response.content.decode()
    assert wallet_balance(account=devsolo) == Decimal("100.00")

    response = client.post(
        "/admin/accounts/apikey/add/",
        {"account": alpha.pk, "name": "ops", "scopes": ["read", "manage"]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    secret = next(m.rsplit(": ", 1)[1] for m in shown if "will not be shown again" in m)
    key = ApiKey.objects.get()
    assert api_key_authenticate(secret=secret) == key and key.scopes == ["read", "manage"]
    response = client.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]}, follow=True
    )
    assert api_key_authenticate(secret=secret) is None
    assert AuditRecord.objects.get(action="api_key.revoke").actor == user
