"""Webhooks delivered to a real local HTTP server: signed JSON (verified here with the secret),
retried until a 2xx with every attempt logged, and deduplicated."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from accounts.models_webhooks import WebhookDelivery
from accounts.webhooks import SIGNATURE_HEADER, prepaid_low_balance_check, webhook_signature_verify
from settlement.services.payments import payment_record
from tests.api.conftest import ApiWorld, build
from tests.settlement.test_close_world import D, utc
from tests.settlement.test_invoicing import issue_all

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """Records each POST; answers the next status of `script` (then 200s)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def register(client: Any, url: str, events: list[str], **extra: Any) -> int:
    response = client.post(
        "/api/v1/webhooks", {"url": url, "secret": SECRET, "events": events, **extra}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert "secret" not in response.json()
    return int(response.json()["id"])


def test_invoice_issued_is_signed_and_delivered_to_the_issuer_and_its_ancestors(
    db: None, receiver: Receiver, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    aw = build(issue=False)
    beta_hook = register(aw.client("beta"), receiver.url, ["invoice.issued"])
    register(aw.client("acme"), receiver.url + "/acme", ["payment.received"])  # not subscribed to invoices
    with django_capture_on_commit_callbacks(execute=True):
        issue_all(aw.world)
    # Beta hears of its own invoice from alpha and of acme's from beta; nothing of alpha's own.
    bodies = sorted((json.loads(r["body"]) for r in receiver.received), key=lambda b: b["data"]["number"])
    assert [
        (b["event"], b["data"]["number"], b["data"]["account"], b["data"]["total"]["amount"]) for b in bodies
    ] == [
        ("invoice.issued", "ALPHA-2026-000001", "beta", "1200"),
        ("invoice.issued", "BETA-2026-000001", "acme", "1855"),
    ]
    for request in receiver.received:
        header = request["headers"][SIGNATURE_HEADER]
        assert webhook_signature_verify(secret=SECRET, body=request["body"], header=header)
        assert not webhook_signature_verify(secret="wrong-secret-000000", body=request["body"], header=header)
        assert not webhook_signature_verify(secret=SECRET, body=request["body"] + b" ", header=header)
    log = aw.client("beta").get(f"/api/v1/webhooks/{beta_hook}/deliveries").json()["results"]
    assert [(d["status"], d["attempts"], d["attempt_log"][0]["status_code"]) for d in log] == [
        ("delivered", 1, 200)
    ] * 2


def test_failures_are_retried_with_each_attempt_logged(
    aw: ApiWorld, receiver: Receiver, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    hook = register(aw.client("beta"), receiver.url, ["payment.received"])
    receiver.script = [500, 503]
    with django_capture_on_commit_callbacks(execute=True):
        payment_record(
            account=aw.world.acme,
            amount=D("1855.00"),
            currency="USD",
            received_at=utc("2026-11-05T00:00:00Z"),
            reference="W-1",
        )
    # Tasks run eagerly in tests, so the retries (30 s, 60 s later in production) follow at once.
    (delivery,) = aw.client("beta").get(f"/api/v1/webhooks/{hook}/deliveries").json()["results"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in delivery["attempt_log"]] == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 200, ""),
    ]
    assert delivery["payload"]["data"]["allocations"] == [
        {"invoice": "BETA-2026-000001", "amount": {"amount": "1855", "currency": "USD"}}
    ]
    # The same payment replayed emits nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        payment_record(
            account=aw.world.acme,
            amount=D("1855.00"),
            currency="USD",
            received_at=utc("2026-11-05T00:00:00Z"),
            reference="W-1",
        )
    assert WebhookDelivery.objects.count() == 1 and len(receiver.received) == 3


def test_an_unreachable_endpoint_fails_after_the_last_attempt(
    aw: ApiWorld, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    from accounts.webhooks import MAX_ATTEMPTS

    register(aw.client("beta"), "http://127.0.0.1:9/closed", ["payment.received"])
    with django_capture_on_commit_callbacks(execute=True):
        payment_record(
            account=aw.world.acme,
            amount=D("10.00"),
            currency="USD",
            received_at=utc("2026-11-05T00:00:00Z"),
            reference="W-2",
        )
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", MAX_ATTEMPTS, None)
    assert "Connection refused" in delivery.last_error


def test_low_prepaid_balance_alerts_once_per_top_up(
    aw: ApiWorld, receiver: Receiver, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    devsolo = aw.client("devsolo")
    missing = devsolo.post(
        "/api/v1/webhooks",
        {"url": receiver.url, "secret": SECRET, "events": ["prepaid.low_balance"]},
        format="json",
    )
    assert missing.status_code == 400  # a low-balance alert needs its threshold
    register(devsolo, receiver.url, ["prepaid.low_balance"], low_balance_below="70.00")
    with django_capture_on_commit_callbacks(execute=True):
        # Wallet 60.4375 (100 - 39.5625) is below 70: one alert; the second check adds none.
        assert prepaid_low_balance_check() == 1
        assert prepaid_low_balance_check() == 0
    (body,) = [json.loads(r["body"]) for r in receiver.received]
    assert body["data"]["balance"] == {"amount": "60.44", "currency": "USD"}
    assert body["data"]["threshold"] == {"amount": "70", "currency": "USD"}


def test_a_hold_is_announced_to_the_account_and_its_ancestors(
    aw: ApiWorld, receiver: Receiver, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    from accounts.models import Account
    from accounts.services import account_update

    register(aw.client("alpha"), receiver.url, ["account.on_hold", "account.suspended"])
    acme = Account.objects.get(code="acme")
    with django_capture_on_commit_callbacks(execute=True):
        account_update(account=acme, status="on_hold")
        account_update(account=acme, status="on_hold")  # no change: no second event
        account_update(account=Account.objects.get(code="acme"), status="active")  # lifting: none
    (body,) = [json.loads(r["body"]) for r in receiver.received]
    assert body["event"] == "account.on_hold"
    assert (body["data"]["account"], body["data"]["status"], body["data"]["previous_status"]) == (
        "acme",
        "on_hold",
        "active",
    )


def test_internal_addresses_and_redirects_are_refused(
    aw: ApiWorld, settings: Any, receiver: Receiver
) -> None:
    from accounts.models_webhooks import WebhookEndpoint
    from accounts.webhooks import webhook_deliver, webhook_event_emit

    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    beta = aw.client("beta")
    for url in (
        "http://127.0.0.1:8000/admin",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/",
        "http://localhost/",
    ):
        response = beta.post(
            "/api/v1/webhooks", {"url": url, "secret": SECRET, "events": ["invoice.issued"]}, format="json"
        )
        assert response.status_code == 400, url
    assert not WebhookEndpoint.objects.exists()
    # Registered while allowed, refused at delivery once not: no request leaves.
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    register(beta, receiver.url, ["account.on_hold"])
    webhook_event_emit(account=aw.world.acme, event="account.on_hold", payload={"account": "acme"})
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    delivery = WebhookDelivery.objects.get()
    outcome = webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (outcome.delivered, delivery.attempts, receiver.received) == (False, 1, [])
    assert "non-public address" in delivery.last_error
    # A redirect is an answer, not followed.
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    receiver.script = [302]
    webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.status, len(receiver.received)) == (302, "pending", 1)
