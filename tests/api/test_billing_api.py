"""Usage summaries, invoices, credit notes, statements, payments and balances over the API, with
the scenario's October figures worked out by hand."""

from __future__ import annotations

import csv
import io

from settlement.models import Invoice
from settlement.services.credit_notes import credit_note_issue
from settlement.services.payments import payment_record
from tests.api.conftest import ApiWorld, error_of
from tests.settlement.test_close_world import D, utc


def test_usage_by_model_day_and_child(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    by_model = beta.get("/api/v1/accounts/beta/usage?group_by=model").json()["rows"]
    # What beta owes alpha (list - 4%): minimax 2,000M x 0.288 + 500M x 1.056 = 1,104;
    # opus 10M x 4.80 + 2M x 24.00 = 96.
    assert [(r["model"], r["tokens"], r["amount"]["amount"]) for r in by_model] == [
        ("claude-opus-4.6", 12_000_000, "96"),
        ("minimax-m2.5", 2_500_000_000, "1104"),
    ]
    by_day = beta.get("/api/v1/accounts/beta/usage?group_by=period,day").json()["rows"]
    assert [(r["period"], r["day"], r["amount"]["amount"]) for r in by_day] == [
        ("2026-10", "2026-10-15", "1104"),
        ("2026-10", "2026-10-16", "96"),
    ]
    # What each child owes beta (acme at list): 600 + 550 + 50 + 50 = 1,250.
    by_child = beta.get("/api/v1/accounts/beta/usage?group_by=account").json()["rows"]
    assert [(r["account"], r["tokens"], r["amount"]["amount"]) for r in by_child] == [
        ("acme", 2_512_000_000, "1250")
    ]
    assert (
        beta.get("/api/v1/accounts/beta/usage?group_by=model&day_from=2026-10-16").json()["rows"][0]["tokens"]
        == 12_000_000
    )
    assert error_of(beta.get("/api/v1/accounts/beta/usage?group_by=colour"))["code"] == "validation_failed"
    assert beta.get("/api/v1/accounts/beta/usage?day_from=2026-11-01&day_to=2026-10-01").status_code == 400


def test_invoices_of_the_subtree_json_pdf_csv(aw: ApiWorld) -> None:
    beta = aw.client("beta")
    page = beta.get("/api/v1/accounts/acme/invoices").json()
    # acme: 1,250 usage + 500 workshop = 1,750; tax 6% = 105; total 1,855.
    assert [(i["number"], i["total"]["amount"], i["tax"]["amount"]) for i in page["results"]] == [
        ("BETA-2026-000001", "1855", "105")
    ]
    assert beta.get("/api/v1/accounts/acme/invoices?status=paid").json()["count"] == 0
    assert beta.get("/api/v1/accounts/acme/invoices?period=2026-10&ordering=-total").json()["count"] == 1
    detail = beta.get("/api/v1/invoices/BETA-2026-000001").json()
    assert detail["account"] == "acme" and len(detail["lines"]) == 5
    assert beta.get("/api/v1/invoices/BETA-2026-000001/pdf").content.startswith(b"%PDF")
    rows = list(csv.reader(io.StringIO(beta.get("/api/v1/accounts/acme/invoices.csv").content.decode())))
    assert sum(1 for r in rows if "BETA-2026-000001" in r) == 5


def test_credit_notes_payments_and_balances(aw: ApiWorld) -> None:
    world = aw.world
    invoice = Invoice.objects.get(number="BETA-2026-000001")
    credit_note_issue(
        invoice=invoice,
        amount=D("106.00"),
        reason="outage",
        now=utc("2026-11-03T00:00:00Z"),
        idempotency_key="cn",
    )
    payment_record(
        account=world.acme,
        amount=D("1000.00"),
        currency="USD",
        received_at=utc("2026-11-05T00:00:00Z"),
        reference="WIRE-1",
    )
    beta = aw.client("beta")
    notes = beta.get("/api/v1/accounts/acme/credit-notes").json()["results"]
    # 106.00 tax included at 6%: subtotal 100.00, tax 6.00.
    assert [
        (n["invoice"], n["subtotal"]["amount"], n["tax"]["amount"], n["total"]["amount"]) for n in notes
    ] == [("BETA-2026-000001", "100", "6", "106")]
    assert beta.get(f"/api/v1/credit-notes/{notes[0]['number']}").json()["reason"] == "outage"
    pdf = beta.get(f"/api/v1/credit-notes/{notes[0]['number']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert notes[0]["number"] in beta.get("/api/v1/accounts/acme/credit-notes.csv").content.decode()
    made = beta.get("/api/v1/accounts/acme/payments").json()["results"]
    received = beta.get("/api/v1/accounts/beta/payments-received").json()["results"]
    assert made == received
    assert [
        (p["reference"], p["amount"]["amount"], p["unapplied"]["amount"], p["allocations"]) for p in made
    ] == [
        (
            "WIRE-1",
            "1000",
            "0",
            [{"invoice": "BETA-2026-000001", "amount": {"amount": "1000", "currency": "USD"}}],
        )
    ]
    assert beta.get("/api/v1/accounts/beta/payments").json()["count"] == 0  # beta has paid alpha nothing
    balance = beta.get("/api/v1/accounts/acme/balance").json()
    # Open: 1,855 - 106 credited - 1,000 paid = 749; available: 10,000 - 749 = 9,251.
    assert (balance["open_receivables"]["amount"], balance["available"]["amount"]) == ("749", "9251")


def test_prepaid_statements_and_wallet(aw: ApiWorld) -> None:
    devsolo = aw.client("devsolo")
    statements = devsolo.get("/api/v1/accounts/devsolo/statements").json()["results"]
    # 40M glm-5 input x 0.3165 + 10M output x 2.69025 = 12.66 + 26.9025 = 39.5625 (shown 39.56);
    # closing 100 - 39.5625 = 60.4375 (shown 60.44).
    assert [
        (s["period"], s["topups"]["amount"], s["usage"]["amount"], s["closing"]["amount"]) for s in statements
    ] == [("2026-10", "100", "39.56", "60.44")]
    assert devsolo.get("/api/v1/accounts/devsolo/statements/2026-10/pdf").content.startswith(b"%PDF")
    assert devsolo.get("/api/v1/accounts/devsolo/statements/2026-09/pdf").status_code == 404
    balance = devsolo.get("/api/v1/accounts/devsolo/balance").json()
    assert (balance["wallet"]["amount"], balance["available"]["amount"]) == ("60.4375", "60.4375")


def test_a_parent_records_its_childs_payment_and_a_charge(aw: ApiWorld) -> None:
    from settlement.models import ManualCharge, Payment

    beta, acme, alpha = aw.client("beta"), aw.client("acme"), aw.client("alpha")
    wire = {
        "amount": "855.00",
        "currency": "USD",
        "reference": "ACME-WIRE-9",
        "received_at": "2026-11-08T00:00:00Z",
    }
    first = beta.post("/api/v1/accounts/acme/payments", wire, format="json")
    assert first.status_code == 201, first.json()
    # 1,855 - 855 = 1,000 still open on acme's October invoice.
    assert first.json()["allocations"] == [
        {"invoice": "BETA-2026-000001", "amount": {"amount": "855", "currency": "USD"}}
    ]
    assert Invoice.objects.get(number="BETA-2026-000001").open_amount == D("1000.00")
    # The same wire again is the same payment; other figures under its reference are a conflict.
    assert beta.post("/api/v1/accounts/acme/payments", wire, format="json").json()["id"] == first.json()["id"]
    clash = beta.post("/api/v1/accounts/acme/payments", {**wire, "amount": "900.00"}, format="json")
    assert clash.status_code == 409 and Payment.objects.count() == 1
    # Only the direct parent records: acme itself and its grandparent alpha are refused.
    assert acme.post("/api/v1/accounts/acme/payments", wire, format="json").status_code == 403
    assert alpha.post("/api/v1/accounts/acme/payments", wire, format="json").status_code == 403
    bad = beta.post(
        "/api/v1/accounts/acme/payments", {**wire, "currency": "EUR", "reference": "X"}, format="json"
    )
    assert bad.status_code == 400 and Payment.objects.count() == 1

    charge = beta.post(
        "/api/v1/accounts/acme/charges",
        {"description": "Fine-tuning consultation", "amount": "250.00", "at": "2026-11-20T00:00:00Z"},
        format="json",
    )
    assert charge.status_code == 201, charge.json()
    assert charge.json()["amount"] == {"amount": "250", "currency": "USD"}
    # The world already holds October's workshop charge; this is the second.
    assert ManualCharge.objects.filter(description="Fine-tuning consultation").count() == 1
    negative = beta.post("/api/v1/accounts/acme/charges", {"description": "x", "amount": "-5"}, format="json")
    assert negative.status_code == 400 and ManualCharge.objects.count() == 2
