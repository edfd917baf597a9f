"""The reseller API over the account tree (§4): the subtree, child accounts, their price lists and
balances. Every lookup goes through `accounts.api.scoping`; writes call services."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.common import ResellerListView, ResellerView, money, responses
from accounts.api.reseller_rules import child_account_change, child_account_close, child_account_open
from accounts.api.scoping import MANAGE_SCOPE, scope_of
from accounts.api.serializers import (
    AccountCreateIn,
    AccountOut,
    AccountUpdateIn,
    BalanceOut,
    PriceListIn,
    PriceListOut,
    PriceListSetOut,
)
from accounts.models import TOKEN_CLASSES, Account, Kind, PriceList, Status, Terms
from accounts.selectors import cascade_prices_many
from accounts.services import price_list_set
from distributor.errors import PermissionRefused, ValidationFailed
from distributor.money import normalize


class AccountFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Kind.choices)
    terms = django_filters.ChoiceFilter(choices=Terms.choices)
    status = django_filters.ChoiceFilter(choices=Status.choices)
    parent = django_filters.CharFilter(field_name="parent__code", help_text="Direct children of this code")
    code_prefix = django_filters.CharFilter(field_name="code", lookup_expr="startswith")

    class Meta:
        model = Account
        fields = ["kind", "terms", "status", "parent", "code_prefix"]


class AccountListCreateView(ResellerListView):
    queryset = Account.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = AccountOut
    filterset_class = AccountFilter
    ordering_fields = ["code", "name", "created_at", "depth", "status"]
    ordering = ["code"]

    def get_queryset(self) -> QuerySet[Account]:
        return scope_of(self.request).accounts()

    @extend_schema(operation_id="accounts_list", summary="Your account and its subtree")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="accounts_create",
        summary="Open a child account",
        description=(
            "Under `parent` (a distributor of your subtree; default your own account), in the parent's "
            "currency, with terms within what the parent may grant: a prepaid parent opens prepaid "
            "children; a postpaid child's period and net days are no longer than the parent's; its "
            "credit limit is not above the parent's own available credit."
        ),
        request=AccountCreateIn,
        responses=responses(AccountOut, write=True, status=201),
    )
    def post(self, request: Request) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        data = AccountCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        parent = scope.find(fields.pop("parent")) if "parent" in fields else scope.account
        account = child_account_open(parent=parent, **fields)
        return Response(AccountOut(scope.accounts().get(pk=account.pk)).data, status=status.HTTP_201_CREATED)


class AccountDetailView(ResellerView):
    @extend_schema(
        operation_id="account_read", summary="One account of your subtree", responses=responses(AccountOut)
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(AccountOut(scope_of(request).find(code)).data)

    @extend_schema(
        operation_id="account_update",
        summary="Change a child account's terms, limit, status, tax rate or commitment",
        request=AccountUpdateIn,
        responses=responses(AccountOut, write=True),
    )
    def patch(self, request: Request, code: str) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        account = scope.find_below(code)
        data = AccountUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        child_account_change(account=account, **dict(data.validated_data))
        return Response(AccountOut(scope.find(code)).data)


class AccountCloseView(ResellerView):
    @extend_schema(
        operation_id="account_close",
        summary="Close a child account",
        description="Its keys stop working; its children must be closed first. Closing twice is a no-op.",
        request=None,
        responses=responses(AccountOut, write=True),
    )
    def post(self, request: Request, code: str) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        child_account_close(account=scope.find_below(code))
        return Response(AccountOut(scope.find(code)).data)


class AccountBalanceView(ResellerView):
    @extend_schema(
        operation_id="account_balance",
        summary="Balances and available credit",
        responses=responses(BalanceOut),
    )
    def get(self, request: Request, code: str) -> Response:
        from settlement.api.selectors import account_balances

        account = scope_of(request).find(code)
        figures = account_balances(account=account)
        cur = account.currency
        return Response(
            {
                "account": account.code,
                "status": account.status,
                "terms": account.terms,
                "wallet": money(figures["wallet"], cur, exact=True),
                "credit_limit": money(account.credit_limit, cur),
                "open_receivables": money(figures["open_receivables"], cur),
                "unbilled": money(figures["unbilled"], cur, exact=True),
                "credit_balance": money(figures["credit_balance"], cur),
                "available": money(figures["available"], cur, exact=True),
            }
        )


# --- price lists -------------------------------------------------------------------------------


def below_cost_warnings(*, account: Account, at: datetime) -> list[dict[str, str]]:
    """Where `account`'s price at `at` is below what its parent pays for the same tokens."""
    from procurement.models import ProviderModel

    if account.parent_id is None:
        return []
    codes = list(ProviderModel.objects.order_by("code").values_list("code", flat=True))
    cascades = cascade_prices_many(requests=[(account.pk, code, at) for code in codes])
    warnings: list[dict[str, str]] = []
    for code in codes:
        cascade = cascades.get((account.pk, code, at))
        if cascade is None or len(cascade.hops) < 2:
            continue
        own, parent = cascade.hops[0].prices, cascade.hops[1].prices
        for token_class in TOKEN_CLASSES:
            price, cost = own.get(token_class), parent.get(token_class)
            if price is not None and cost is not None and price < cost:
                warnings.append(
                    {
                        "code": "below_cost",
                        "model": code,
                        "token_class": token_class,
                        "price": normalize(price),
                        "cost": normalize(cost),
                        "message": (
                            f"{account.code} would pay {normalize(price)} per 1M {token_class} tokens of "
                            f"{code}, below the {normalize(cost)} its parent pays: a negative margin"
                        ),
                    }
                )
    return warnings


class PriceListView(ResellerListView):
    queryset = PriceList.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = PriceListOut
    ordering_fields = ["effective_from", "created_at"]
    ordering = ["-effective_from"]

    def get_queryset(self) -> QuerySet[PriceList]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return (
            PriceList.objects.filter(account=account).select_related("account").prefetch_related("overrides")
        )

    @extend_schema(operation_id="price_lists_list", summary="An account's price list versions")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="price_lists_set",
        summary="Set a child's price list from a date",
        description=(
            "Only the account's parent sets its prices. Append-only and effective-dated. A price below "
            "your own cost for a model is accepted and listed in `warnings` (code `below_cost`)."
        ),
        request=PriceListIn,
        responses=responses(PriceListSetOut, write=True, status=201),
    )
    def post(self, request: Request, code: str) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        account = scope.find_below(code)
        if account.parent_id != scope.account.pk:
            raise PermissionRefused(
                f"{code!r}'s prices are set by its parent",
                details={"account": code},
            )
        data = PriceListIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if fields["rule"] == "discount" and fields["rate"] > 1:
            raise ValidationFailed("a discount is at most 1 (100%)", details={"rate": str(fields["rate"])})
        overrides: dict[str, dict[str, Decimal]] = fields.get("overrides") or {}
        price_list = price_list_set(
            account=account,
            effective_from=fields["effective_from"],
            rule=fields["rule"],
            rate=fields["rate"],
            overrides=overrides,
        )
        price_list = (
            PriceList.objects.select_related("account").prefetch_related("overrides").get(pk=price_list.pk)
        )
        body = dict(PriceListOut(price_list).data)
        body["warnings"] = below_cost_warnings(account=account, at=price_list.effective_from)
        return Response(body, status=status.HTTP_201_CREATED)
