"""Seeds the fuzz run's throwaway database: the API tests' world (October closed and issued, a
sibling and another book), a credit note, a payment and a webhook, so generated requests reach
real rows. Prints the secret of beta's key (every scope) on the last line. With `--fresh-key`, only
issues beta another key and prints its secret (schemathesis may have revoked the first one)."""

from __future__ import annotations

import django


def seed() -> str:
    from accounts.webhooks import webhook_endpoint_register
    from settlement.models import Invoice
    from settlement.services.credit_notes import credit_note_issue
    from settlement.services.payments import payment_record
    from tests.api.conftest import build
    from tests.settlement.test_close_world import D, utc

    aw = build()
    invoice = Invoice.objects.get(number="BETA-2026-000001")
    credit_note_issue(
        invoice=invoice, amount=D("5.00"), reason="fuzz", now=utc("2026-11-02T00:00:00Z"), idempotency_key="f"
    )
    payment_record(
        account=aw.world.acme,
        amount=D("100.00"),
        currency="USD",
        received_at=utc("2026-11-03T00:00:00Z"),
        reference="F-1",
    )
    # Port 9 (discard) is closed: nothing is delivered during the run, no worker needed.
    webhook_endpoint_register(
        account=aw.world.beta,
        url="http://127.0.0.1:9/hook",
        secret="fuzz-secret-0123456789",
        events=["invoice.issued"],
    )
    return aw.secrets["beta"]


def fresh_key() -> str:
    from accounts.models import Account
    from accounts.services import api_key_create
    from tests.api.conftest import ALL_SCOPES

    return api_key_create(account=Account.objects.get(code="beta"), scopes=ALL_SCOPES, name="fresh")[1]


if __name__ == "__main__":
    import sys

    django.setup()
    print(fresh_key() if sys.argv[1:] == ["--fresh-key"] else seed())
