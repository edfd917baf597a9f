"""Dunning levels and steps (§9, §11.9): levels per book, each account's dunning state, the steps
taken, and where reminders go."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_webhooks"),
        ("ledger", "0003_exchange_rates"),
        ("settlement", "0004_risk"),
    ]

    operations = [
        migrations.CreateModel(
            name="DunningContact",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("email", models.EmailField(max_length=254)),
                ("name", models.CharField(blank=True, max_length=200)),
                (
                    "account",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="dunning_contact",
                        to="accounts.account",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="DunningLevel",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "days",
                    models.PositiveIntegerField(
                        help_text="Days past due (calendar dates in the book's zone)"
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("reminder", "Reminder"),
                            ("on_hold", "On Hold"),
                            ("suspended", "Suspended"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="dunning_levels",
                        to="ledger.book",
                    ),
                ),
            ],
            options={
                "ordering": ["book", "days"],
                "constraints": [
                    models.UniqueConstraint(fields=("book", "days"), name="dunning_level_unique_days"),
                    models.CheckConstraint(
                        condition=models.Q(("days__gte", 1)), name="dunning_level_after_due"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("action__in", ["reminder", "on_hold", "suspended"])),
                        name="dunning_level_action_valid",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="DunningState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("state", models.CharField(default="active", max_length=16)),
                (
                    "status_set",
                    models.CharField(
                        blank=True,
                        help_text="The account status dunning wrote ('' = it wrote none)",
                        max_length=16,
                    ),
                ),
                ("since", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "account",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="dunning_state",
                        to="accounts.account",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["active", "on_hold", "suspended"])),
                        name="dunning_state_valid",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="DunningStep",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("reminder", "Reminder"),
                            ("on_hold", "On Hold"),
                            ("suspended", "Suspended"),
                            ("lifted", "Lifted"),
                        ],
                        max_length=16,
                    ),
                ),
                ("level_days", models.PositiveIntegerField(blank=True, null=True)),
                ("days_past_due", models.IntegerField(blank=True, null=True)),
                (
                    "amount_due",
                    models.DecimalField(
                        decimal_places=18,
                        default=0,
                        help_text="Past-due debt of the account when the step was taken",
                        max_digits=38,
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                (
                    "at",
                    models.DateTimeField(help_text="The `as_of` of the run (or the payment time of a lift)"),
                ),
                ("status_before", models.CharField(blank=True, max_length=16)),
                ("status_after", models.CharField(blank=True, max_length=16)),
                ("emailed_to", models.CharField(blank=True, max_length=300)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="dunning_steps",
                        to="accounts.account",
                    ),
                ),
                (
                    "book",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="dunning_steps",
                        to="ledger.book",
                    ),
                ),
                (
                    "invoice",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="dunning_steps",
                        to="settlement.invoice",
                    ),
                ),
            ],
            options={
                "ordering": ["at", "id"],
                "indexes": [models.Index(fields=["book", "at"], name="dunning_step_book_at")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("invoice__isnull", False)),
                        fields=("invoice", "level_days"),
                        name="dunning_step_once_per_invoice_level",
                    )
                ],
            },
        ),
    ]
