"""Plain input and output serializers of the reseller API (accounts, price lists, keys, webhooks).
Amounts go out as `{"amount", "currency"}`; decimals come in as strings."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.common import MoneyOut, money
from accounts.models import (
    API_KEY_SCOPES,
    TOKEN_CLASSES,
    Account,
    ApiKey,
    Kind,
    PriceList,
    PriceRule,
    Status,
    Terms,
)
from accounts.models_webhooks import WEBHOOK_EVENTS, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from distributor.money import PRICE_DECIMAL_PLACES, normalize

AMOUNT_DIGITS = 20
RATE_PLACES = 8

# --- accounts ----------------------------------------------------------------------------------


class AccountOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    # A declared field named like DRF's Field.parent attribute: the metaclass moves it aside.
    parent = serializers.SerializerMethodField()  # type: ignore[assignment]
    credit_limit = serializers.SerializerMethodField()
    commitment = serializers.SerializerMethodField()
    tax_rate = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "code",
            "name",
            "parent",
            "kind",
            "currency",
            "terms",
            "net_days",
            "credit_limit",
            "status",
            "tax_rate",
            "commitment",
            "depth",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_parent(self, obj: Account) -> str | None:
        return obj.parent.code if obj.parent_id is not None and obj.parent is not None else None

    @extend_schema_field(MoneyOut(allow_null=True))
    def get_credit_limit(self, obj: Account) -> dict[str, str] | None:
        return money(obj.credit_limit, obj.currency)

    @extend_schema_field(MoneyOut)
    def get_commitment(self, obj: Account) -> dict[str, str] | None:
        return money(obj.commitment, obj.currency)

    @extend_schema_field(serializers.CharField(help_text="A fraction: 0.06 is 6%"))
    def get_tax_rate(self, obj: Account) -> str:
        return normalize(obj.tax_rate)


class AccountCreateIn(serializers.Serializer):
    code = serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=64)
    name = serializers.CharField(max_length=200)
    parent = serializers.CharField(  # type: ignore[assignment]
        required=False, max_length=64, help_text="A distributor of your subtree; defaults to your account"
    )
    kind = serializers.ChoiceField(choices=Kind.choices)
    terms = serializers.ChoiceField(choices=Terms.choices)
    net_days = serializers.IntegerField(min_value=0, max_value=3650, required=False)
    credit_limit = serializers.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    tax_rate = serializers.DecimalField(
        max_digits=9, decimal_places=RATE_PLACES, min_value=0, max_value=1, required=False
    )
    commitment = serializers.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=2, min_value=0, required=False
    )


class AccountUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=Kind.choices, required=False)
    terms = serializers.ChoiceField(choices=Terms.choices, required=False)
    net_days = serializers.IntegerField(min_value=0, max_value=3650, required=False)
    credit_limit = serializers.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    status = serializers.ChoiceField(
        choices=[Status.ACTIVE, Status.ON_HOLD, Status.SUSPENDED],
        required=False,
        help_text="Closing is POST .../close",
    )
    tax_rate = serializers.DecimalField(
        max_digits=9, decimal_places=RATE_PLACES, min_value=0, max_value=1, required=False
    )
    commitment = serializers.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=2, min_value=0, required=False
    )


class BalanceOut(serializers.Serializer):
    account = serializers.CharField()
    status = serializers.CharField()
    terms = serializers.CharField()
    wallet = MoneyOut(allow_null=True, help_text="Prepaid: the deposit balance (exact)")
    credit_limit = MoneyOut(allow_null=True)
    open_receivables = MoneyOut(help_text="Open invoices this account owes its parent")
    unbilled = MoneyOut(help_text="Postpaid usage not yet on an issued invoice (exact)")
    credit_balance = MoneyOut(help_text="Payments not yet applied to an invoice")
    available = MoneyOut(help_text="What it may still spend (§6)")


# --- price lists -------------------------------------------------------------------------------


class PriceListOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    account = serializers.SerializerMethodField()
    rate = serializers.SerializerMethodField()
    overrides = serializers.SerializerMethodField()

    class Meta:
        model = PriceList
        fields = ["id", "account", "effective_from", "rule", "rate", "overrides", "created_at"]

    def get_account(self, obj: PriceList) -> str:
        return obj.account.code

    def get_rate(self, obj: PriceList) -> str:
        return normalize(obj.rate)

    @extend_schema_field(
        serializers.DictField(
            child=serializers.DictField(child=serializers.CharField()),
            help_text="model code -> token class -> unit price per 1M tokens",
        )
    )
    def get_overrides(self, obj: PriceList) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for override in obj.overrides.all():
            found.setdefault(override.model_code, {})[override.token_class] = normalize(override.unit_price)
        return found


class PriceListIn(serializers.Serializer):
    effective_from = serializers.DateTimeField(
        help_text="ISO 8601 with a time zone; not before the latest version"
    )
    rule = serializers.ChoiceField(choices=PriceRule.choices)
    rate = serializers.DecimalField(max_digits=9, decimal_places=RATE_PLACES, min_value=0, max_value=10)
    overrides = serializers.DictField(
        child=serializers.DictField(
            child=serializers.DecimalField(max_digits=30, decimal_places=PRICE_DECIMAL_PLACES, min_value=0)
        ),
        required=False,
        help_text="model code -> token class -> unit price per 1M tokens",
    )

    def validate_overrides(self, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for model_code, prices in value.items():
            unknown = sorted(set(prices) - set(TOKEN_CLASSES))
            if unknown or not prices:
                raise serializers.ValidationError(
                    f"{model_code}: token classes are {', '.join(TOKEN_CLASSES)}; got {unknown or 'none'}"
                )
        return value


class PriceWarningOut(serializers.Serializer):
    code = serializers.CharField(help_text="below_cost")
    model = serializers.CharField()
    token_class = serializers.CharField()
    price = serializers.CharField(help_text="The child's unit price per 1M tokens")
    cost = serializers.CharField(help_text="What you pay your parent per 1M tokens")
    message = serializers.CharField()


class PriceListSetOut(PriceListOut):
    warnings = PriceWarningOut(many=True, read_only=True)

    class Meta(PriceListOut.Meta):
        fields = [*PriceListOut.Meta.fields, "warnings"]


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    account = serializers.SerializerMethodField()
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "account",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "revoked_at",
            "active",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_account(self, obj: ApiKey) -> str | None:
        return obj.account.code if obj.account is not None else None

    def get_active(self, obj: ApiKey) -> bool:
        from django.utils import timezone

        return obj.revoked_at is None and (obj.expires_at is None or obj.expires_at > timezone.now())


class ApiKeyCreatedOut(ApiKeyOut):
    secret = serializers.CharField(read_only=True, help_text="Shown once; only its SHA-256 is kept")

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "secret"]


class ApiKeyIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(API_KEY_SCOPES)),
        min_length=1,
        max_length=len(API_KEY_SCOPES),
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


# --- webhooks ----------------------------------------------------------------------------------


class WebhookEndpointOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    account = serializers.SerializerMethodField()
    low_balance_below = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "account",
            "url",
            "events",
            "low_balance_below",
            "active",
            "created_at",
            "deactivated_at",
        ]

    def get_account(self, obj: WebhookEndpoint) -> str:
        return obj.account.code

    @extend_schema_field(MoneyOut(allow_null=True))
    def get_low_balance_below(self, obj: WebhookEndpoint) -> dict[str, str] | None:
        return money(obj.low_balance_below, obj.account.currency)


class WebhookEndpointIn(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    secret = serializers.CharField(min_length=16, max_length=200, help_text="Signs each delivery")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(WEBHOOK_EVENTS)),
        min_length=1,
        max_length=len(WEBHOOK_EVENTS),
    )
    account = serializers.CharField(required=False, max_length=64, help_text="Defaults to your account")
    low_balance_below = serializers.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=2, min_value=0, required=False, allow_null=True
    )


class WebhookAttemptOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = WebhookAttempt
        fields = ["attempt", "at", "status_code", "error", "duration_ms"]


class WebhookDeliveryOut(serializers.ModelSerializer):  # type: ignore[type-arg]
    attempt_log = WebhookAttemptOut(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "payload",
            "created_at",
            "delivered_at",
            "attempt_log",
        ]
