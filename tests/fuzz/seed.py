"""Seeds the fuzz run's throwaway database: the API tests' world (October closed and issued, a
sibling and another book), a credit note, a payment and a webhook, so generated requests reach
real rows. Prints the secret of beta's key (every scope) on the last line."""

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


if __name__ == "__main__":
    django.setup()
    print(seed())
