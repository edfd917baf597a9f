"""Risk: provision matrix versions and rates, provisioning runs, exposure snapshots, write-offs and
their recoveries; the write-off permission on invoices."""

import django.db.models.deletion
import django.db.models.expressions
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_exchange_rates"),
        ("settlement", "0003_billing"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="invoice",
            options={
                "ordering": ["period_start", "issuer_book", "account"],
                "permissions": [("write_off_invoice", "Can write off invoices")],
            },
        ),
        migrations.CreateModel(
            name="ProvisionMatrix",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("version", models.PositiveIntegerField()),
                (
                    "effective_from",
                    models.DateField(help_text="First day (in the book's zone) the rates apply"),
                ),
                (
                    "edges",
                    models.JSONField(help_text="Bucket edges in days past due, e.g. [0, 30, 60, 90, 180]"),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="provision_matrices",
                        to="ledger.book",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "provision matrices",
                "ordering": ["book", "-version"],
            },
        ),
        migrations.CreateModel(
            name="ProvisionRate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("position", models.PositiveSmallIntegerField()),
                ("bucket", models.CharField(max_length=16)),
                ("rate", models.DecimalField(decimal_places=10, max_digits=12)),
                (
                    "matrix",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="rates",
                        to="settlement.provisionmatrix",
                    ),
                ),
            ],
            options={
                "ordering": ["matrix", "position"],
            },
        ),
        migrations.CreateModel(
            name="ProvisionRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                ("period_start", models.DateField()),
                ("label", models.CharField(max_length=16)),
                ("as_of", models.DateTimeField()),
                (
                    "receivables",
                    models.DecimalField(
                        decimal_places=18, help_text="Open receivables aged as of the run", max_digits=38
                    ),
                ),
                (
                    "required",
                    models.DecimalField(
                        decimal_places=18,
                        help_text="Σ bucket x rate, rounded once half-up to the minor unit",
                        max_digits=38,
                    ),
                ),
                (
                    "balance_before",
                    models.DecimalField(
                        decimal_places=18,
                        help_text="The allowance's ledger balance before the run",
                        max_digits=38,
                    ),
                ),
                (
                    "change",
                    models.DecimalField(
                        decimal_places=18,
                        help_text="Posted: required - balance_before (negative = a release)",
                        max_digits=38,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="provision_runs",
                        to="ledger.book",
                    ),
                ),
                (
                    "entry",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ledger.journalentry",
                    ),
                ),
                (
                    "matrix",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="runs",
                        to="settlement.provisionmatrix",
                    ),
                ),
            ],
            options={
                "ordering": ["-period_start", "book", "currency"],
            },
        ),
        migrations.CreateModel(
            name="WriteOff",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                ("amount", models.DecimalField(decimal_places=18, max_digits=38)),
                ("against_allowance", models.DecimalField(decimal_places=18, max_digits=38)),
                ("expensed", models.DecimalField(decimal_places=18, max_digits=38)),
                ("recovered", models.DecimalField(decimal_places=18, default=0, max_digits=38)),
                ("at", models.DateTimeField()),
                ("reason", models.CharField(blank=True, max_length=300)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="write_offs",
                        to="ledger.book",
                    ),
                ),
                (
                    "by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "entry",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ledger.journalentry",
                    ),
                ),
                (
                    "invoice",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="write_off",
                        to="settlement.invoice",
                    ),
                ),
            ],
            options={
                "ordering": ["-at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="WriteOffRecovery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount", models.DecimalField(decimal_places=18, max_digits=38)),
                ("to_expense", models.DecimalField(decimal_places=18, max_digits=38)),
                ("to_allowance", models.DecimalField(decimal_places=18, max_digits=38)),
                ("at", models.DateTimeField()),
                (
                    "entry",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ledger.journalentry",
                    ),
                ),
                (
                    "payment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="recoveries",
                        to="settlement.payment",
                    ),
                ),
                (
                    "write_off",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="recoveries",
                        to="settlement.writeoff",
                    ),
                ),
            ],
            options={
                "ordering": ["at", "id"],
            },
        ),
        migrations.CreateModel(
            name="ExposureSnapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                ("day", models.DateField()),
                ("as_of", models.DateTimeField()),
                ("upstream_prepaid", models.DecimalField(decimal_places=18, max_digits=38)),
                ("unbilled", models.DecimalField(decimal_places=18, max_digits=38)),
                ("receivables", models.DecimalField(decimal_places=18, max_digits=38)),
                ("gross", models.DecimalField(decimal_places=18, max_digits=38)),
                ("customer_deposits", models.DecimalField(decimal_places=18, max_digits=38)),
                ("upstream_payables", models.DecimalField(decimal_places=18, max_digits=38)),
                ("net", models.DecimalField(decimal_places=18, max_digits=38)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="exposure_snapshots",
                        to="ledger.book",
                    ),
                ),
            ],
            options={
                "ordering": ["book", "currency", "day"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("book", "currency", "day"), name="exposure_snapshot_unique_day"
                    )
                ],
            },
        ),
        migrations.AddConstraint(
            model_name="provisionmatrix",
            constraint=models.UniqueConstraint(
                fields=("book", "version"), name="provision_matrix_unique_version"
            ),
        ),
        migrations.AddConstraint(
            model_name="provisionrate",
            constraint=models.UniqueConstraint(
                fields=("matrix", "bucket"), name="provision_rate_unique_bucket"
            ),
        ),
        migrations.AddConstraint(
            model_name="provisionrate",
            constraint=models.CheckConstraint(
                condition=models.Q(("rate__gte", 0), ("rate__lte", 1)), name="provision_rate_between_0_and_1"
            ),
        ),
        migrations.AddConstraint(
            model_name="provisionrun",
            constraint=models.UniqueConstraint(
                fields=("book", "currency", "period_start"), name="provision_run_unique_period"
            ),
        ),
        migrations.AddConstraint(
            model_name="writeoff",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="write_off_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="writeoff",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "amount",
                        django.db.models.expressions.CombinedExpression(
                            models.F("against_allowance"), "+", models.F("expensed")
                        ),
                    )
                ),
                name="write_off_adds_up",
            ),
        ),
        migrations.AddConstraint(
            model_name="writeoff",
            constraint=models.CheckConstraint(
                condition=models.Q(("recovered__gte", 0), ("recovered__lte", models.F("amount"))),
                name="write_off_recovered_within_amount",
            ),
        ),
        migrations.AddConstraint(
            model_name="writeoffrecovery",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="write_off_recovery_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="writeoffrecovery",
            constraint=models.UniqueConstraint(
                fields=("write_off", "payment"), name="write_off_recovery_once"
            ),
        ),
    ]
