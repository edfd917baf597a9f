"""The downstream side (§4): the account tree under the root, each account's terms and limits, the
price lists a parent sets for its children, prepaid top-ups, API keys and the audit trail of staff
changes.

Only `accounts.services` writes these rows. The tree is kept denormalised (`ancestor_ids`, `depth`)
so that a cascade of prices or a subtree scope is one query, never a walk up the parents.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from distributor.money import amount_field, currency_field, price_field

TOKEN_CLASSES: tuple[str, ...] = ("input", "cached_input", "cache_write", "output")
API_KEY_SCOPES: tuple[str, ...] = ("usage", "read", "manage")


class Kind(models.TextChoices):
    DISTRIBUTOR = "distributor"
    CUSTOMER = "customer"


class Terms(models.TextChoices):
    PREPAID = "prepaid"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class Status(models.TextChoices):
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class PriceRule(models.TextChoices):
    DISCOUNT = "discount"
    MARKUP = "markup"


def rate_field(**kwargs: Any) -> models.DecimalField:
    """A fraction such as a discount, a markup or a tax rate (0.055 = 5.5%)."""
    return models.DecimalField(max_digits=12, decimal_places=8, **kwargs)


class Account(models.Model):
    """A reseller or customer of the tree. `parent` None means a direct child of the root (the
    distributor that owns the root book). `book` bills this account; `own_book` is the book a
    distributor bills its own children from, created with its first child."""

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    currency = currency_field(help_text="Billing currency; a child bills in its parent's currency")
    terms = models.CharField(max_length=16, choices=Terms.choices)
    net_days = models.PositiveIntegerField(default=30, help_text="Payment due = period end + net days")
    credit_limit = amount_field(null=True, blank=True, help_text="Postpaid only; empty counts as 0")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    tax_rate = rate_field(default=0)
    commitment = amount_field(default=0, help_text="Minimum monthly commitment")
    book = models.ForeignKey(
        "ledger.Book",
        on_delete=models.PROTECT,
        related_name="billed_accounts",
        help_text="The book billing it",
    )
    own_book = models.OneToOneField(
        "ledger.Book",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owner_account",
        help_text="The book it bills its own children from",
    )
    ancestor_ids = ArrayField(
        models.BigIntegerField(), default=list, blank=True, help_text="Root-most first, excluding itself"
    )
    depth = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(terms="prepaid") | models.Q(credit_limit__isnull=True),
                name="account_prepaid_no_credit_limit",
            ),
            models.CheckConstraint(
                condition=models.Q(credit_limit__isnull=True) | models.Q(credit_limit__gte=0),
                name="account_credit_limit_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(tax_rate__gte=0) & models.Q(tax_rate__lte=1), name="account_tax_rate_range"
            ),
            models.CheckConstraint(
                condition=models.Q(commitment__gte=0), name="account_commitment_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(ancestor_ids__len=models.F("depth")), name="account_depth"
            ),
            models.CheckConstraint(
                condition=models.Q(parent__isnull=True, depth=0)
                | models.Q(parent__isnull=False, depth__gt=0),
                name="account_top_level_depth_zero",
            ),
            models.CheckConstraint(
                condition=models.Q(own_book__isnull=True) | models.Q(kind="distributor"),
                name="account_own_book_distributor_only",
            ),
            models.CheckConstraint(condition=models.Q(kind__in=Kind.values), name="account_kind_valid"),
            models.CheckConstraint(condition=models.Q(terms__in=Terms.values), name="account_terms_valid"),
            models.CheckConstraint(condition=models.Q(status__in=Status.values), name="account_status_valid"),
        ]
        indexes = [GinIndex(fields=["ancestor_ids"], name="account_ancestors")]

    def __str__(self) -> str:
        return self.code

    @property
    def counterparty(self) -> str:
        """The ledger's counterparty string for this account in its parent's book."""
        return f"account:{self.code}"


class PriceList(models.Model):
    """The price `account` buys at from its parent, from `effective_from` until the next version:
    list x (1 - rate) for a discount, list x (1 + rate) for a markup, overrides replacing a class
    price outright. Append-only: a change is a new version."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="price_lists")
    effective_from = models.DateTimeField()
    rule = models.CharField(max_length=8, choices=PriceRule.choices)
    rate = rate_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["account", "effective_from"], name="price_list_unique_version"),
            models.CheckConstraint(
                condition=models.Q(rule__in=PriceRule.values), name="price_list_rule_valid"
            ),
            models.CheckConstraint(condition=models.Q(rate__gte=0), name="price_list_rate_not_negative"),
            models.CheckConstraint(
                condition=~models.Q(rule="discount") | models.Q(rate__lte=1),
                name="price_list_discount_at_most_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account.code} {self.rule} {self.rate} from {self.effective_from.isoformat()}"


class PriceOverride(models.Model):
    """An absolute unit price per 1M tokens for one model and token class, replacing the rule's.
    Keyed by model code (model codes are globally unique, §3) and checked by the service."""

    price_list = models.ForeignKey(PriceList, on_delete=models.PROTECT, related_name="overrides")
    model_code = models.CharField(max_length=100)
    token_class = models.CharField(max_length=16, choices=[(c, c) for c in TOKEN_CLASSES])
    unit_price = price_field()

    class Meta:
        ordering = ["price_list", "model_code", "token_class"]
        constraints = [
            models.UniqueConstraint(
                fields=["price_list", "model_code", "token_class"], name="price_override_unique_class"
            ),
            models.CheckConstraint(condition=models.Q(unit_price__gte=0), name="price_override_not_negative"),
            models.CheckConstraint(
                condition=models.Q(token_class__in=TOKEN_CLASSES), name="price_override_class_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_code} {self.token_class} {self.unit_price}"


class ApiKey(models.Model):
    """A secret issued to an account (its subtree is its scope), or with no account the root's
    service key (the gateway). Only the SHA-256 of the secret is kept; `prefix` identifies it in lists."""

    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16)
    secret_hash = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=16))
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scopes__contained_by=list(API_KEY_SCOPES)) & models.Q(scopes__len__gt=0),
                name="api_key_scopes_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.account.code if self.account else 'service'})"

    # DRF puts `principal()` in request.user: the key answers for itself.
    is_authenticated = True
    is_anonymous = False

    @staticmethod
    def hash_of(secret: str) -> str:
        """The stored form of a secret: its SHA-256, hex. The secret itself is never stored."""
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def is_service(self) -> bool:
        return self.account_id is None

    def principal(self) -> ApiKey:
        return self


class Topup(models.Model):
    """Cash a prepaid account paid into its wallet; `receipt_number` is what the customer gets."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="topups")
    amount = amount_field()
    currency = currency_field()
    at = models.DateTimeField()
    reference = models.CharField(max_length=200, help_text="The bank or card reference")
    receipt_number = models.CharField(max_length=100, unique=True)
    entry = models.ForeignKey("ledger.JournalEntry", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "reference"], name="topup_unique_reference"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="topup_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.receipt_number} {self.account.code} {self.amount} {self.currency}"


class AuditRecord(models.Model):
    """Who changed what and when: terms, limits, statuses, prices and keys (conventions §9).
    `actor` is None for a change made by the system (a job, the scenario loader)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.object_repr}"


# Webhooks live in their own module; imported here so Django registers them with this app.
from accounts.models_webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: E402

__all__ = [
    "API_KEY_SCOPES",
    "TOKEN_CLASSES",
    "Account",
    "ApiKey",
    "AuditRecord",
    "Kind",
    "PriceList",
    "PriceOverride",
    "PriceRule",
    "Status",
    "Terms",
    "Topup",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
