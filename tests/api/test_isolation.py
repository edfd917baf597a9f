"""The isolation matrix (issue 7): for every endpoint and method of the schema, beta's key (which
holds every scope) gets 404 for anything outside beta's subtree {beta, acme}: its parent alpha,
its sibling gamma, the root's other customer devsolo, another book's omega, and codes, invoice
numbers, key ids and webhook ids that belong to them or to nobody. Nothing changes meanwhile."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.generators import SchemaGenerator

from accounts.models import Account, ApiKey, PriceList
from accounts.models_webhooks import WebhookEndpoint
from accounts.webhooks import webhook_endpoint_register
from settlement.models import Invoice, Payment
from settlement.services.credit_notes import credit_note_issue
from tests.api.conftest import ApiWorld, error_of
from tests.settlement.test_close_world import D, utc

OUTSIDE_CODES = ["alpha", "gamma", "devsolo", "omega", "omega-kid", "nobody"]

# Bodies that would succeed inside the subtree, so a 404 is the scope speaking, not validation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/accounts/{code}", "patch"): {"name": "Renamed"},
    ("/api/v1/accounts/{code}/price-lists", "post"): {
        "effective_from": "2026-12-01T00:00:00Z",
        "rule": "discount",
        "rate": "0.01",
    },
    ("/api/v1/accounts/{code}/api-keys", "post"): {"scopes": ["read"]},
}


def schema_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method) for path, item in schema["paths"].items() for method in item if method != "parameters"
    ]


def snapshot() -> tuple[Any, ...]:
    return (
        sorted(Account.objects.values_list("code", "name", "status", "terms", "credit_limit")),
        PriceList.objects.count(),
        sorted(ApiKey.objects.values_list("pk", "revoked_at")),
        sorted(WebhookEndpoint.objects.values_list("pk", "active")),
        Payment.objects.count(),
    )


def test_every_operation_refuses_what_is_outside_the_subtree(aw: ApiWorld) -> None:
    world = aw.world
    alpha_hook = webhook_endpoint_register(
        account=world.alpha, url="http://127.0.0.1:9/hook", secret="s" * 20, events=["invoice.issued"]
    )
    omega_hook = webhook_endpoint_register(
        account=aw.omega, url="http://127.0.0.1:9/hook", secret="s" * 20, events=["invoice.issued"]
    )
    alpha_invoice = Invoice.objects.get(account=world.alpha)  # PLATFORM-2026-000001: alpha owes the root
    alpha_note = credit_note_issue(
        invoice=alpha_invoice,
        amount=D("10.00"),
        reason="goodwill",
        now=utc("2026-11-02T00:00:00Z"),
        idempotency_key="cn-1",
    )
    outside_keys = list(
        ApiKey.objects.exclude(account__code__in=["beta", "acme"]).values_list("account__code", "pk")
    )
    outside = {
        "code": OUTSIDE_CODES,
        "number": [alpha_invoice.number, alpha_note.number, "PLATFORM-2026-999999"],
        "webhook_id": [alpha_hook.pk, omega_hook.pk, 999_999],
        "period": ["2026-10"],
    }
    beta = aw.client("beta")
    before = snapshot()
    checked: set[tuple[str, str]] = set()
    for path, method in schema_operations():
        names = re.findall(r"{(\w+)}", path)
        if not names:
            continue
        cases: list[str] = []
        if names == ["code", "key_id"]:
            # Another account's key under its own code, and under beta's code (ids are guessable).
            cases = [path.format(code=c, key_id=k) for c, k in outside_keys]
            cases += [path.format(code="beta", key_id=k) for _, k in outside_keys]
        elif names == ["code", "period"]:
            cases = [path.format(code=c, period="2026-10") for c in OUTSIDE_CODES]
        else:
            (name,) = names
            cases = [path.format(**{name: value}) for value in outside[name]]
        body = BODIES.get((path, method), {})
        for url in cases:
            response = getattr(beta, method)(url, data=body, format="json")
            assert response.status_code == 404, (method, url, response.status_code, response.content[:200])
            assert error_of(response)["code"] == "not_found"
        checked.add((path, method))
    assert snapshot() == before
    # Every parameterised operation of the schema was exercised: 28 operations today.
    assert len(checked) == 28, sorted(checked)
    # The same ids answer inside the owner's scope, so the 404s above were the scope and not typos.
    assert aw.client("alpha").get(f"/api/v1/invoices/{alpha_invoice.number}").status_code == 200
    assert aw.client("alpha").get(f"/api/v1/credit-notes/{alpha_note.number}").status_code == 200
    assert aw.client("alpha").get(f"/api/v1/webhooks/{alpha_hook.pk}").status_code == 200


def test_collections_list_only_the_subtree(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    assert [a["code"] for a in beta.get("/api/v1/accounts").json()["results"]] == ["acme", "beta"]
    alpha_codes = [a["code"] for a in aw.client("alpha").get("/api/v1/accounts").json()["results"]]
    assert alpha_codes == ["acme", "alpha", "beta", "gamma"]
    webhook_endpoint_register(
        account=aw.world.alpha, url="http://127.0.0.1:9/", secret="s" * 20, events=["invoice.issued"]
    )
    assert beta.get("/api/v1/webhooks").json()["count"] == 0
    # Beta's own invoice list holds beta's invoice only; alpha's is not there.
    assert [i["number"] for i in beta.get("/api/v1/invoices").json()] == ["ALPHA-2026-000001"]
    assert (
        beta.get("/api/v1/accounts?parent=alpha").json()["count"] == 1
    )  # beta itself, nothing else of alpha's


def test_writes_naming_an_outside_parent_or_account_are_404(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    before = snapshot()
    for parent in OUTSIDE_CODES:
        response = beta.post(
            "/api/v1/accounts",
            {"code": "sneaky", "name": "Sneaky", "parent": parent, "kind": "customer", "terms": "monthly"},
            format="json",
        )
        assert response.status_code == 404, parent
        response = beta.post(
            "/api/v1/webhooks",
            {
                "url": "http://127.0.0.1:9/",
                "secret": "s" * 20,
                "events": ["invoice.issued"],
                "account": parent,
            },
            format="json",
        )
        assert response.status_code == 404, parent
    assert snapshot() == before


def test_service_key_and_missing_scope_are_refused(aw: ApiWorld) -> None:
    from accounts.services import api_key_create
    from tests.api.conftest import api

    _, service = api_key_create(account=None, scopes=["usage"])
    assert error_of(api(service).get("/api/v1/accounts"))["code"] == "permission_denied"
    _, read_only = api_key_create(account=aw.world.beta, scopes=["read"])
    response = api(read_only).patch("/api/v1/accounts/acme", {"name": "x"}, format="json")
    assert response.status_code == 403 and error_of(response)["details"] == {"scope": "manage"}
