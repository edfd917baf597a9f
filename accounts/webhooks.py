"""Webhooks (§4 reseller API): register an endpoint, emit an event, sign and deliver it.

Who hears an event: every active endpoint, subscribed to that event, of the account the event is
about or of any of its ancestors (a reseller hears about its whole subtree). Emitting writes one
WebhookDelivery per endpoint inside the caller's transaction (an outbox) and enqueues the delivery
task only once that transaction commits; a rolled-back event is never announced.

Signature: `X-Distributor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
A receiver recomputes it over the raw body and refuses a stale `t` to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, Status, Terms
from accounts.models_webhooks import (
    WEBHOOK_EVENTS,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from distributor.errors import ValidationFailed
from distributor.money import normalize, round_minor, to_decimal

SIGNATURE_HEADER: Final = "X-Distributor-Signature"
DELIVERY_TIMEOUT_SECONDS: Final = 10
# Attempts in all (the first and its retries); backoff doubles from 30 s: 30 s, 1 min, 2 min ... ~2 h.
MAX_ATTEMPTS: Final = 9
BACKOFF_BASE_SECONDS: Final = 30
MAX_ERROR_LENGTH: Final = 500


# --- endpoints ---------------------------------------------------------------------------------


def _private_host_refusal(hostname: str) -> str:
    """Why `hostname` may not receive webhooks ("" if it may): it must resolve, and only to public
    addresses, so a reseller cannot make the worker call an internal service. Checked again at
    each delivery, since DNS can change after registration."""
    if settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return ""
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"webhook host {hostname!r} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"webhook host {hostname!r} resolves to a non-public address"
    return ""


def _events_clean(events: list[str]) -> list[str]:
    wanted = list(dict.fromkeys(events))
    if not wanted:
        raise ValidationFailed("subscribe to at least one event", details={"allowed": list(WEBHOOK_EVENTS)})
    unknown = [e for e in wanted if e not in WEBHOOK_EVENTS]
    if unknown:
        raise ValidationFailed(
            f"unknown webhook event {unknown[0]!r}",
            details={"events": unknown, "allowed": list(WEBHOOK_EVENTS)},
        )
    return wanted


def webhook_endpoint_register(
    *,
    account: Account,
    url: str,
    secret: str,
    events: list[str],
    low_balance_below: Decimal | None = None,
) -> WebhookEndpoint:
    """Register `url` for `events` about `account` and its subtree, signed with `secret`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("a webhook URL must be an absolute http(s) URL", details={"url": url})
    refused = _private_host_refusal(parts.hostname)
    if refused:
        raise ValidationFailed(refused, details={"url": url})
    if len(secret) < 16:
        raise ValidationFailed("a webhook secret must be at least 16 characters", details={})
    wanted = _events_clean(events)
    threshold = None
    if low_balance_below is not None:
        threshold = to_decimal(low_balance_below, field="low_balance_below")
        if threshold < 0 or round_minor(threshold, account.currency) != threshold:
            raise ValidationFailed(
                f"low_balance_below is a non-negative amount in {account.currency}'s minor unit",
                details={"low_balance_below": str(threshold)},
            )
    if "prepaid.low_balance" in wanted and threshold is None:
        raise ValidationFailed(
            "prepaid.low_balance needs low_balance_below, the wallet balance that counts as low",
            details={"events": wanted},
        )
    with transaction.atomic():
        return WebhookEndpoint.objects.create(
            account=account, url=url, secret=secret, events=wanted, low_balance_below=threshold
        )


def webhook_endpoint_deactivate(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> WebhookEndpoint:
    """Stop delivering to it; its log stays. Deactivating twice keeps the first time."""
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if locked.active:
            locked.active = False
            locked.deactivated_at = now or timezone.now()
            locked.save(update_fields=["active", "deactivated_at"])
    return locked


# --- emitting ----------------------------------------------------------------------------------


def _emit_many(*, event: str, items: list[tuple[Account, str, dict[str, Any]]]) -> int:
    """Write a delivery of `event` for each (account, dedupe key, payload) to every subscribed
    endpoint of the account or an ancestor: one query for the endpoints, one insert. A dedupe key
    an endpoint already has is skipped, so a retried emit writes nothing. Returns rows written."""
    chains = {account.pk: [*list(account.ancestor_ids or ()), account.pk] for account, _, _ in items}
    owners = {pk for chain in chains.values() for pk in chain}
    endpoints: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(
        account_id__in=owners, active=True, events__contains=[event]
    ).order_by("pk"):
        endpoints.setdefault(endpoint.account_id, []).append(endpoint)
    if not endpoints:
        return 0
    created_at = timezone.now().isoformat()
    rows: list[WebhookDelivery] = []
    for account, dedupe_key, payload in items:
        event_id = uuid.uuid4()
        body = {"id": str(event_id), "event": event, "created_at": created_at, "data": payload}
        for owner in chains[account.pk]:
            for endpoint in endpoints.get(owner, []):
                rows.append(
                    WebhookDelivery(
                        endpoint=endpoint,
                        event=event,
                        event_id=event_id,
                        dedupe_key=dedupe_key[:200],
                        payload=body,
                    )
                )
    if not rows:
        return 0
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    keys = sorted({row.dedupe_key for row in rows})
    transaction.on_commit(lambda: _enqueue(event=event, dedupe_keys=keys))
    return len(rows)


def _enqueue(*, event: str, dedupe_keys: list[str]) -> None:
    """After commit: hand each new delivery to the worker. Deliveries are at least once; a
    receiver tells repeats apart by the body's `id`."""
    from accounts.tasks import webhook_deliver_task

    for delivery_id in WebhookDelivery.objects.filter(
        event=event, dedupe_key__in=dedupe_keys, status=DeliveryStatus.PENDING, attempts=0
    ).values_list("pk", flat=True):
        webhook_deliver_task.delay(delivery_id)


def webhook_event_emit(
    *, account: Account, event: str, payload: dict[str, Any], dedupe_key: str = ""
) -> None:
    """Announce `event` about `account` to its and its ancestors' subscribed endpoints.

    Call it inside the transaction that makes the event true. Give a `dedupe_key` naming the
    occurrence (e.g. "account.on_hold:acme:<dunning run id>") to make a retried emit a no-op;
    without one every call is a new event."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    key = dedupe_key or f"{event}:{account.code}:{uuid.uuid4()}"
    _emit_many(event=event, items=[(account, key, payload)])


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": normalize(round_minor(amount, currency)), "currency": currency}


def invoices_issued_emit(*, issued: Sequence[tuple[Any, Account]]) -> None:
    """`invoice.issued` for each just-issued (invoice, account), set-based: the nightly issue run
    calls it once for its whole batch (settlement.services.invoicing)."""
    from ledger.models import Book

    if not issued:
        return
    books = dict(Book.objects.filter(pk__in={i.issuer_book_id for i, _ in issued}).values_list("pk", "code"))
    _emit_many(
        event="invoice.issued",
        items=[
            (
                account,
                f"invoice.issued:{invoice.number}",
                {
                    "number": invoice.number,
                    "account": account.code,
                    "issuer": books[invoice.issuer_book_id],
                    "period": invoice.label,
                    "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
                    "due_date": invoice.due_date.isoformat(),
                    "total": _money(invoice.total, invoice.currency),
                },
            )
            for invoice, account in issued
        ],
    )


def payment_received_emit(*, payment: Any) -> None:
    """`payment.received` for a just-recorded payment (called from settlement's payment_record)."""
    webhook_event_emit(
        account=payment.account,
        event="payment.received",
        payload={
            "account": payment.account.code,
            "reference": payment.reference,
            "amount": _money(payment.amount, payment.currency),
            "received_at": payment.received_at.isoformat(),
            "allocations": [
                {"invoice": a.invoice.number, "amount": _money(a.amount, payment.currency)}
                for a in payment.allocations.select_related("invoice").order_by("pk")
            ],
        },
        dedupe_key=f"payment.received:{payment.account.code}:{payment.reference}",
    )


def _emit_to(*, endpoint: WebhookEndpoint, event: str, dedupe_key: str, payload: dict[str, Any]) -> int:
    """One delivery to one endpoint (events whose audience is per endpoint, like a threshold)."""
    event_id = uuid.uuid4()
    body = {"id": str(event_id), "event": event, "created_at": timezone.now().isoformat(), "data": payload}
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(
                endpoint=endpoint, event=event, event_id=event_id, dedupe_key=dedupe_key[:200], payload=body
            )
    except IntegrityError:
        return 0  # already alerted for this key
    transaction.on_commit(lambda: _enqueue(event=event, dedupe_keys=[dedupe_key[:200]]))
    return 1


def prepaid_low_balance_check(*, now: datetime | None = None) -> int:
    """Emit `prepaid.low_balance` to each endpoint whose threshold a prepaid wallet in its subtree
    is below. One alert per wallet per top-up: the dedupe key names the latest top-up, so a wallet
    that is topped up and runs low again alerts again. Returns the deliveries created."""
    from accounts.models import Topup
    from settlement.services.credit_control import credit_states_compute

    endpoints = list(
        WebhookEndpoint.objects.filter(active=True, events__contains=["prepaid.low_balance"])
        .exclude(low_balance_below__isnull=True)
        .select_related("account")
        .order_by("pk")
    )
    created = 0
    for endpoint in endpoints:
        owner = endpoint.account
        wallets = list(
            Account.objects.filter(Q(pk=owner.pk) | Q(ancestor_ids__contains=[owner.pk]))
            .filter(terms=Terms.PREPAID)
            .exclude(status=Status.CLOSED)
            .order_by("pk")
        )
        states = credit_states_compute(account_ids=[a.pk for a in wallets])
        latest_topups = dict(
            Topup.objects.filter(account__in=wallets)
            .order_by("account_id", "-id")
            .distinct("account_id")
            .values_list("account_id", "id")
        )
        for wallet in wallets:
            state = states.get(wallet.pk)
            assert endpoint.low_balance_below is not None
            if state is None or state.available >= endpoint.low_balance_below:
                continue
            with transaction.atomic():
                created += _emit_to(
                    endpoint=endpoint,
                    event="prepaid.low_balance",
                    dedupe_key=f"prepaid.low_balance:{wallet.code}:topup-{latest_topups.get(wallet.pk, 0)}",
                    payload={
                        "account": wallet.code,
                        "balance": _money(state.available, wallet.currency),
                        "threshold": _money(endpoint.low_balance_below, wallet.currency),
                        "checked_at": (now or timezone.now()).isoformat(),
                    },
                )
    return created


# --- signing and delivering --------------------------------------------------------------------


def webhook_sign(*, secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_signature_verify(*, secret: str, body: bytes, header: str, tolerance_seconds: int = 300) -> bool:
    """What a receiver does: recompute the HMAC and refuse a stale timestamp (a replay)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = webhook_sign(secret=secret, body=body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer, not an instruction: following it could lead to a host the address
    check never saw."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    delivered: bool
    retry: bool
    attempt: int


def webhook_deliver(*, delivery_id: int) -> DeliveryOutcome:
    """POST one delivery once and log the attempt. A 2xx delivers it; anything else leaves it
    pending for a retry, or failed after MAX_ATTEMPTS. Idempotent: a delivered or failed delivery
    is not sent again."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        return DeliveryOutcome(delivered=delivery.status == DeliveryStatus.DELIVERED, retry=False, attempt=0)
    endpoint = delivery.endpoint
    refused = _private_host_refusal(urlsplit(endpoint.url).hostname or "")
    if refused:
        return _attempt_record(delivery_id=delivery_id, status_code=None, error=refused, duration_ms=0)
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 -- the URL was checked to be http(s) at registration
        endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "distributor-webhooks/1",
            "X-Distributor-Event": delivery.event,
            "X-Distributor-Delivery": str(delivery.pk),
            SIGNATURE_HEADER: webhook_sign(secret=endpoint.secret, body=body, timestamp=timestamp),
        },
    )
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:
        with _OPENER.open(request, timeout=DELIVERY_TIMEOUT_SECONDS) as response:
            status_code = response.status
    except urllib.error.HTTPError as exc:
        status_code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
    duration_ms = int((time.monotonic() - started) * 1000)
    return _attempt_record(
        delivery_id=delivery_id, status_code=status_code, error=error, duration_ms=duration_ms
    )


def _attempt_record(
    *, delivery_id: int, status_code: int | None, error: str, duration_ms: int
) -> DeliveryOutcome:
    delivered = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        locked.attempts += 1
        WebhookAttempt.objects.create(
            delivery=locked,
            attempt=locked.attempts,
            at=timezone.now(),
            status_code=status_code,
            error=error[:MAX_ERROR_LENGTH],
            duration_ms=duration_ms,
        )
        locked.last_status_code = status_code
        locked.last_error = error[:MAX_ERROR_LENGTH]
        if delivered:
            locked.status = DeliveryStatus.DELIVERED
            locked.delivered_at = timezone.now()
        elif locked.attempts >= MAX_ATTEMPTS:
            locked.status = DeliveryStatus.FAILED
        locked.save()
    return DeliveryOutcome(
        delivered=delivered, retry=locked.status == DeliveryStatus.PENDING, attempt=locked.attempts
    )
