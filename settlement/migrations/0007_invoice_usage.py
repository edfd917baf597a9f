"""What has been invoiced of the usage moves from the rollup rows (`billed_amount`, `billed_tokens`,
rewritten for every row of a month when its invoice was issued: ~12 million rows for 10,000
accounts at 20 models) to the invoices: `InvoiceUsage` rows, one per month, model, class and unit
price an invoice bills. `UsageAccrual` keeps each payer's postpaid usage per month, model, class and
unit price, written by rating with the daily rows: what the close reads, what credit control sums,
and (its revisions) what tells a draft that nothing arrived since it was drawn.

Backfill: accruals are summed from the rollups; what the rollups marked billed becomes usage rows of
the payer's issued invoice for that period (or its latest issued invoice, for late usage). The
usage rows of an issued invoice are then guarded like its lines (statement-level, as in 0006)."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = r"""
INSERT INTO settlement_usageaccrual
    (payer_account_id, month, model_id, model_code, token_class, unit_price, currency, first_day, tokens,
     amount, revision, updated_at)
SELECT payer_account_id, date_trunc('month', day::timestamp)::date, model_id, min(model_code), token_class,
       unit_price, min(currency), min(day), sum(tokens), sum(amount), 1, now()
FROM settlement_usagerollup WHERE NOT prepaid GROUP BY 1, 2, model_id, token_class, unit_price;

INSERT INTO settlement_invoiceusage
    (invoice_id, payer_account_id, month, first_day, model_id, model_code, token_class, unit_price, tokens,
     amount)
SELECT invoice_id, payer, month, first_day, model_id, model_code, token_class, unit_price, tokens, amount
FROM (
    SELECT (SELECT i.id FROM settlement_invoice i
            WHERE i.account_id = b.payer AND i.status <> 'draft'
            ORDER BY (b.month BETWEEN i.period_start AND i.period_end) DESC, i.period_start DESC
            LIMIT 1) AS invoice_id, b.*
    FROM (
        SELECT payer_account_id AS payer, date_trunc('month', day::timestamp)::date AS month,
               min(day) AS first_day, model_id, min(model_code) AS model_code, token_class, unit_price,
               sum(billed_tokens) AS tokens, sum(billed_amount) AS amount
        FROM settlement_usagerollup
        WHERE NOT prepaid AND (billed_amount <> 0 OR billed_tokens <> 0)
        GROUP BY 1, 2, model_id, token_class, unit_price
    ) AS b
) AS placed
WHERE invoice_id IS NOT NULL;
"""

GUARD = r"""
CREATE FUNCTION settlement_invoiceusage_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft' AND id IN (SELECT invoice_id FROM new_rows)
        LIMIT 1;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft' AND id IN (SELECT invoice_id FROM old_rows)
        LIMIT 1;
    ELSE
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft'
          AND id IN (SELECT invoice_id FROM old_rows UNION SELECT invoice_id FROM new_rows)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'the usage billed by an issued invoice cannot change'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER settlement_invoiceusage_guard_insert
    AFTER INSERT ON settlement_invoiceusage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceusage_guard();

CREATE TRIGGER settlement_invoiceusage_guard_update
    AFTER UPDATE ON settlement_invoiceusage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceusage_guard();

CREATE TRIGGER settlement_invoiceusage_guard_delete
    AFTER DELETE ON settlement_invoiceusage
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceusage_guard();
"""

UNGUARD = r"""
DROP TRIGGER IF EXISTS settlement_invoiceusage_guard_delete ON settlement_invoiceusage;
DROP TRIGGER IF EXISTS settlement_invoiceusage_guard_update ON settlement_invoiceusage;
DROP TRIGGER IF EXISTS settlement_invoiceusage_guard_insert ON settlement_invoiceusage;
DROP FUNCTION IF EXISTS settlement_invoiceusage_guard();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0006_invoiceline_guard_statement"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="usage_revision",
            field=models.BigIntegerField(
                blank=True,
                help_text="Sum of the payer's usage accrual revisions up to the period's end when drafted",
                null=True,
            ),
        ),
        migrations.CreateModel(
            name="UsageAccrual",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("payer_account_id", models.BigIntegerField()),
                ("month", models.DateField(help_text="First day of the month")),
                ("model_id", models.BigIntegerField()),
                ("model_code", models.CharField(max_length=100)),
                ("token_class", models.CharField(max_length=16)),
                ("unit_price", models.DecimalField(decimal_places=10, max_digits=24)),
                ("currency", models.CharField(max_length=3)),
                (
                    "first_day",
                    models.DateField(help_text="Earliest day of the month with usage at this price"),
                ),
                ("tokens", models.BigIntegerField(default=0)),
                ("amount", models.DecimalField(decimal_places=18, default=0, max_digits=38)),
                ("revision", models.BigIntegerField(default=0)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["month", "payer_account_id", "model_code", "token_class"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("payer_account_id", "month", "model_id", "token_class", "unit_price"),
                        name="usage_accrual_unique",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="InvoiceUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("payer_account_id", models.BigIntegerField()),
                (
                    "month",
                    models.DateField(help_text="First day of the month the usage happened in (book's zone)"),
                ),
                (
                    "first_day",
                    models.DateField(help_text="Earliest day of the month with usage at this price"),
                ),
                ("model_id", models.BigIntegerField()),
                ("model_code", models.CharField(max_length=100)),
                ("token_class", models.CharField(max_length=16)),
                ("unit_price", models.DecimalField(decimal_places=10, max_digits=24)),
                ("tokens", models.BigIntegerField()),
                ("amount", models.DecimalField(decimal_places=18, max_digits=38)),
                (
                    "invoice",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage",
                        to="settlement.invoice",
                    ),
                ),
            ],
            options={
                "ordering": ["invoice", "month", "model_code", "token_class"],
                "indexes": [
                    models.Index(fields=["payer_account_id", "month"], name="invoice_usage_payer_month")
                ],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.RemoveField(
            model_name="usagerollup",
            name="billed_amount",
        ),
        migrations.RemoveField(
            model_name="usagerollup",
            name="billed_tokens",
        ),
        migrations.RunSQL(GUARD, UNGUARD),
    ]
