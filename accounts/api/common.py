"""Shared parts of the reseller API views: the base classes (API-key throttle, filtering,
ordering), money on the wire, and the error responses documented in the OpenAPI schema."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse
from rest_framework import generics, serializers
from rest_framework.filters import OrderingFilter
from rest_framework.views import APIView

from accounts.api.throttling import ApiKeyRateThrottle
from distributor.money import normalize, round_minor


class MoneyOut(serializers.Serializer):
    amount = serializers.CharField(help_text="A decimal string, never a float")
    currency = serializers.CharField(help_text="ISO 4217")


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorOut(serializers.Serializer):
    error = ErrorDetail()


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorOut, description=description)


# The error responses every reseller endpoint may answer, in the one error body shape.
ERRORS: dict[int, OpenApiResponse] = {
    400: _error("Bad input; nothing was changed"),
    401: _error("Missing, unknown, revoked or expired API key"),
    403: _error("The key lacks the scope, or the action is its parent's to take"),
    404: _error("Not found in the key's subtree"),
    429: _error("Too many requests for this API key; see Retry-After"),
}
WRITE_ERRORS: dict[int, OpenApiResponse] = {**ERRORS, 409: _error("Conflicts with the current state")}


def money(amount: Decimal | None, currency: str, *, exact: bool = False) -> dict[str, str] | None:
    """`{"amount": "12.34", "currency": "USD"}`: rounded to the minor unit unless `exact`
    (usage amounts keep their 10 places, §2)."""
    if amount is None:
        return None
    return {"amount": normalize(amount if exact else round_minor(amount, currency)), "currency": currency}


def responses(ok: Any, *, write: bool = False, status: int = 200) -> dict[int, Any]:
    return {status: ok, **(WRITE_ERRORS if write else ERRORS)}


class ResellerView(APIView):
    """A reseller API view: counted against its key's rate."""

    throttle_classes = [ApiKeyRateThrottle]


class ResellerListView(generics.ListAPIView):  # type: ignore[type-arg]
    """A paginated, filterable, orderable list; `get_queryset` always starts from the scope."""

    throttle_classes = [ApiKeyRateThrottle]
    filter_backends = [DjangoFilterBackend, OrderingFilter]

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context()}
