"""API keys over the reseller API: create (the secret is shown once), list and revoke, for the
key's own account and any account of its subtree. A key never mints a key with more scopes than
it has itself."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.common import ResellerListView, ResellerView, responses
from accounts.api.scoping import MANAGE_SCOPE, scope_of
from accounts.api.serializers import ApiKeyCreatedOut, ApiKeyIn, ApiKeyOut
from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke
from distributor.errors import NotFound, PermissionRefused, ValidationFailed


class ApiKeyFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(method="filter_active", help_text="Neither revoked nor expired")

    class Meta:
        model = ApiKey
        fields = ["active"]

    def filter_active(self, queryset: QuerySet[ApiKey], name: str, value: bool | None) -> QuerySet[ApiKey]:
        live = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        if value is None:
            return queryset
        return queryset.filter(live) if value else queryset.exclude(live)


class ApiKeyListCreateView(ResellerListView):
    queryset = ApiKey.objects.none()  # for the schema; get_queryset scopes every request
    serializer_class = ApiKeyOut
    filterset_class = ApiKeyFilter
    ordering_fields = ["created_at", "expires_at", "name"]
    ordering = ["-created_at", "id"]

    def get_queryset(self) -> QuerySet[ApiKey]:
        account = scope_of(self.request).find(self.kwargs["code"])
        return ApiKey.objects.filter(account=account).select_related("account")

    @extend_schema(operation_id="api_keys_list", summary="An account's API keys (never their secrets)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="api_keys_create",
        summary="Issue an API key; the secret is in this answer only",
        request=ApiKeyIn,
        responses=responses(ApiKeyCreatedOut, write=True, status=201),
    )
    def post(self, request: Request, code: str) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        account = scope.find(code)
        data = ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        beyond = sorted(set(fields["scopes"]) - set(scope.key.scopes))
        if beyond:
            raise PermissionRefused(
                f"a key cannot grant scopes it lacks: {', '.join(beyond)}", details={"scopes": beyond}
            )
        expires_at = fields.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationFailed(
                "expires_at must be in the future", details={"expires_at": expires_at.isoformat()}
            )
        key, secret = api_key_create(
            account=account, scopes=fields["scopes"], name=fields.get("name", ""), expires_at=expires_at
        )
        body = dict(ApiKeyOut(key).data)
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevokeView(ResellerView):
    @extend_schema(
        operation_id="api_key_revoke",
        summary="Revoke an API key from now on (revoking twice keeps the first time)",
        request=None,
        responses=responses(ApiKeyOut, write=True),
    )
    def post(self, request: Request, code: str, key_id: int) -> Response:
        scope = scope_of(request, needs=MANAGE_SCOPE)
        account = scope.find(code)
        key = ApiKey.objects.filter(account=account, pk=key_id).select_related("account").first()
        if key is None:
            raise NotFound(f"no API key {key_id} for {code!r}", details={"account": code, "key": key_id})
        return Response(ApiKeyOut(api_key_revoke(key=key)).data)
