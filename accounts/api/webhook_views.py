"""Webhook endpoints over the reseller API: register, list, read, deactivate, and the delivery log.
An endpoint belongs to an account of the key's subtree and hears about that account's subtree."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.common import ResellerListView, ResellerView, responses
from accounts.api.scoping import MANAGE_SCOPE, scope_of
from accounts.api.serializers import WebhookDeliveryOut, WebhookEndpointIn, WebhookEndpointOut
from accounts.models_webhooks import WEBHOOK_EVENTS, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from accounts.webhooks import webhook_endpoint_deactivate, webhook_endpoint_register
from distributor.errors import NotFound


def _endpoint(request: Request, webhook_id: int, *, needs: str = "read") -> WebhookEndpoint:
    scope = scope_of(request, needs=needs)
    endpoint = (
        WebhookEndpoint.objects.filter(pk=webhook_id, account__in=scope.account_ids())
        .select_related("account")
        .first()
    )
    if endpoint is None:
        raise NotFound(f"no webhook {webhook_id}", details={"webhook": webhook_id})
    return endpoint


class WebhookListCreateView(ResellerListView):
    queryset = WebhookEndpoint.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = WebhookEndpointOut
    filterset_fields = ["active"]
    ordering_fields = ["created_at", "id"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return WebhookEndpoint.objects.filter(
            account__in=scope_of(self.request).account_ids()
        ).select_related("account")

    @extend_schema(operation_id="webhooks_list", summary="Webhook endpoints of your subtree")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Register a webhook URL",
        description=(
            "Events: " + ", ".join(WEBHOOK_EVENTS) + ". Each delivery is a JSON POST signed with "
            "`X-Distributor-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>`, retried "
            "with exponential backoff until a 2xx."
        ),
        request=WebhookEndpointIn,
        responses=responses(WebhookEndpointOut, write=True, status=201),
    )
    def post(self, request: Request) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        data = WebhookEndpointIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        account = scope.find(fields.pop("account")) if "account" in fields else scope.account
        endpoint = webhook_endpoint_register(account=account, **fields)
        return Response(WebhookEndpointOut(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(ResellerView):
    @extend_schema(
        operation_id="webhook_read", summary="One webhook endpoint", responses=responses(WebhookEndpointOut)
    )
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(WebhookEndpointOut(_endpoint(request, webhook_id)).data)

    @extend_schema(
        operation_id="webhook_deactivate",
        summary="Stop delivering to an endpoint (its log stays)",
        responses=responses(WebhookEndpointOut, write=True),
    )
    def delete(self, request: Request, webhook_id: int) -> Response:
        endpoint = _endpoint(request, webhook_id, needs=MANAGE_SCOPE)
        return Response(WebhookEndpointOut(webhook_endpoint_deactivate(endpoint=endpoint)).data)


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.ChoiceFilter(choices=[(e, e) for e in WEBHOOK_EVENTS])

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event"]


class WebhookDeliveryListView(ResellerListView):
    queryset = WebhookDelivery.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = WebhookDeliveryOut
    filterset_class = DeliveryFilter
    ordering_fields = ["created_at", "id", "attempts"]
    ordering = ["-id"]

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        endpoint = _endpoint(self.request, self.kwargs["webhook_id"])
        return WebhookDelivery.objects.filter(endpoint=endpoint).prefetch_related("attempt_log")

    @extend_schema(operation_id="webhook_deliveries_list", summary="The delivery log of an endpoint")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
