"""Child accounts, price lists and balances over the API: what a reseller may grant (decided in
accounts/api/reseller_rules.py), bad input answered 400 with nothing changed, and the
price-below-cost warning."""

from __future__ import annotations

from typing import Any

from accounts.models import Account, AuditRecord, PriceList
from tests.api.conftest import ApiWorld, api, error_of


def child(**fields: Any) -> dict[str, Any]:
    return {"code": "newco", "name": "New Co", "kind": "customer", "terms": "monthly", **fields}


def test_open_a_child_within_the_parents_terms(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    # Beta's own available credit: limit 20,000 - its open invoice ALPHA-2026-000001 of 1,200.00
    # (acme's 2,000M minimax input x 0.288 + 500M output x 1.056 + 10M opus input x 4.80 + 2M output
    # x 24.00 = 576 + 528 + 48 + 48) = 18,800.
    assert beta.get("/api/v1/accounts/beta/balance").json()["available"] == {
        "amount": "18800",
        "currency": "USD",
    }
    too_much = beta.post("/api/v1/accounts", child(credit_limit="18800.01"), format="json")
    assert too_much.status_code == 400
    assert error_of(too_much)["details"] == {"credit_limit": "18800.01", "parent_available": "18800"}
    longer_days = beta.post("/api/v1/accounts", child(net_days=31), format="json")
    assert error_of(longer_days)["details"] == {"parent_net_days": 30, "net_days": 31}
    longer_period = beta.post("/api/v1/accounts", child(terms="quarterly"), format="json")
    assert error_of(longer_period)["details"] == {"parent_terms": "monthly", "terms": "quarterly"}
    assert not Account.objects.filter(code="newco").exists()

    created = beta.post("/api/v1/accounts", child(credit_limit="18800", parent="beta"), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    # Net days default to the parent's (30); the currency is the parent's.
    assert (body["parent"], body["net_days"], body["currency"], body["credit_limit"]["amount"]) == (
        "beta",
        30,
        "USD",
        "18800",
    )
    assert AuditRecord.objects.filter(action="account.create", object_repr="newco").count() == 1


def test_a_prepaid_parent_opens_only_prepaid_children(aw: ApiWorld) -> None:
    from accounts.services import account_create, api_key_create

    prepaid = account_create(
        root_book=aw.world.book,
        code="prepaid-dist",
        name="P",
        kind="distributor",
        currency="USD",
        terms="prepaid",
    )
    client = api(api_key_create(account=prepaid, scopes=["read", "manage"])[1])
    refused = client.post("/api/v1/accounts", child(), format="json")
    assert error_of(refused)["details"] == {
        "parent": "prepaid-dist",
        "parent_terms": "prepaid",
        "terms": "monthly",
    }
    assert client.post("/api/v1/accounts", child(terms="prepaid"), format="json").status_code == 201


def test_update_and_close_children(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    # Raising acme's limit from 10,000 to 18,800.01 passes beta's 18,800 available: refused.
    assert beta.patch("/api/v1/accounts/acme", {"credit_limit": "18800.01"}, format="json").status_code == 400
    lowered = beta.patch(
        "/api/v1/accounts/acme", {"credit_limit": "9000", "status": "on_hold"}, format="json"
    )
    assert lowered.status_code == 200
    assert (lowered.json()["credit_limit"]["amount"], lowered.json()["status"]) == ("9000", "on_hold")
    # An account's own terms are its parent's to set.
    assert beta.patch("/api/v1/accounts/beta", {"name": "Mine"}, format="json").status_code == 403
    assert beta.post("/api/v1/accounts/beta/close").status_code == 403
    # Alpha cannot close beta while beta still has an open child.
    refused = aw.client("alpha").post("/api/v1/accounts/beta/close")
    assert refused.status_code == 409 and error_of(refused)["details"]["open_children"] == ["acme"]
    closed = beta.post("/api/v1/accounts/acme/close")
    assert closed.json()["status"] == "closed"
    assert beta.post("/api/v1/accounts/acme/close").json()["status"] == "closed"  # closing twice: no-op
    # A closed account's keys stop working.
    assert aw.client("acme").get("/api/v1/accounts").status_code == 401


def test_bad_input_is_400_with_the_error_body_and_changes_nothing(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    before = (Account.objects.count(), PriceList.objects.count(), AuditRecord.objects.count())
    for body in (
        child(code="Bad Code"),
        child(credit_limit="abc"),
        child(credit_limit="-1"),
        child(tax_rate="1.5"),
        child(kind="emperor"),
        child(net_days=-1),
        {"code": "x"},
        [],
    ):
        response = beta.post("/api/v1/accounts", body, format="json")
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "validation_failed"
    # JSON nested past the parser's recursion: malformed input, not a server error.
    deep = beta.post("/api/v1/accounts", "[" * 5000 + "]" * 5000, content_type="application/json")
    assert deep.status_code == 400
    assert error_of(deep) == {
        "code": "parse_error",
        "message": "JSON parse error - the body nests too deeply",
        "details": {},
    }
    # Half of a surrogate pair (JSON can escape it, UTF-8 cannot carry it), echoed back in the
    # error: the body escapes it instead of failing the response.
    lone = beta.post("/api/v1/accounts", '{"code": "x", "kind": "\\ud800"}', content_type="application/json")
    assert lone.status_code == 400
    assert b"\\ud800" in lone.content
    assert error_of(lone)["details"]["kind"] == ['"\ud800" is not a valid choice.']
    assert beta.patch("/api/v1/accounts/acme", {"terms": "weekly"}, format="json").status_code == 400
    assert beta.patch("/api/v1/accounts/acme", {"status": "closed"}, format="json").status_code == 400
    for body in (
        {"effective_from": "2026-12-01T00:00:00Z", "rule": "discount", "rate": "1.5"},
        {"effective_from": "not a date", "rule": "discount", "rate": "0.1"},
        {
            "effective_from": "2026-12-01T00:00:00Z",
            "rule": "discount",
            "rate": "0.1",
            "overrides": {"no-such-model": {"input": "1"}},
        },
        {
            "effective_from": "2026-12-01T00:00:00Z",
            "rule": "discount",
            "rate": "0.1",
            "overrides": {"glm-5": {"gold": "1"}},
        },
        # Append-only: a version before acme's latest (2026-01-01) would reprice rated usage.
        {"effective_from": "2025-12-01T00:00:00Z", "rule": "discount", "rate": "0.1"},
    ):
        response = beta.post("/api/v1/accounts/acme/price-lists", body, format="json")
        assert response.status_code == 400, (body, response.json())
        error_of(response)
    assert (Account.objects.count(), PriceList.objects.count(), AuditRecord.objects.count()) == before


def test_a_price_below_the_resellers_cost_is_set_with_a_warning(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    response = beta.post(
        "/api/v1/accounts/acme/price-lists",
        {
            "effective_from": "2026-12-01T00:00:00Z",
            "rule": "discount",
            "rate": "0",
            "overrides": {"minimax-m2.5": {"input": "0.20"}},
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["overrides"] == {"minimax-m2.5": {"input": "0.2"}}
    # Beta pays alpha list x (1 - 4%): 0.30 x 0.96 = 0.288 per 1M minimax input. Acme at 0.20 is
    # below it; every other price is list, above beta's cost: exactly one warning.
    assert [(w["code"], w["model"], w["token_class"], w["price"], w["cost"]) for w in body["warnings"]] == [
        ("below_cost", "minimax-m2.5", "input", "0.2", "0.288")
    ]
    assert PriceList.objects.filter(account=aw.world.acme).count() == 2
    listed = beta.get("/api/v1/accounts/acme/price-lists").json()["results"]
    assert [p["effective_from"] for p in listed] == ["2026-12-01T00:00:00Z", "2026-01-01T00:00:00Z"]
    # Only the parent sets a child's prices: alpha may read acme's but not set them.
    assert aw.client("alpha").get("/api/v1/accounts/acme/price-lists").status_code == 200
    assert (
        aw.client("alpha")
        .post(
            "/api/v1/accounts/acme/price-lists",
            {"effective_from": "2027-01-01T00:00:00Z", "rule": "markup", "rate": "0.1"},
            format="json",
        )
        .status_code
        == 403
    )


def test_filtering_ordering_and_pagination(aw: ApiWorld) -> None:
    alpha = aw.client("alpha")
    page = alpha.get("/api/v1/accounts?ordering=-code&limit=2").json()
    assert page["count"] == 4 and [a["code"] for a in page["results"]] == ["gamma", "beta"]
    assert page["next"].endswith("limit=2&offset=2&ordering=-code")
    assert [a["code"] for a in alpha.get("/api/v1/accounts?kind=customer").json()["results"]] == [
        "acme",
        "gamma",
    ]
    assert alpha.get("/api/v1/accounts?kind=emperor").status_code == 400
