"""The REST API's shared parts: the error handler, the JSON parser and renderer, and API-key
authentication.

Every error a client can cause leaves as a JSON body of one shape:
`{"error": {"code": ..., "message": ..., "details": {...}}}` with a 4xx status.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.parsers import JSONParser as DrfJSONParser
from rest_framework.renderers import JSONRenderer as DrfJSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from distributor.errors import ApplicationError

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: DRF imports this module while rest_framework.views is still initialising.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        return Response(
            error_body("validation_failed", "invalid input", {"errors": exc.messages}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DataError):
        # A value the column cannot hold (an amount too large, say) is the client's input, not our fault.
        logger.info("data error on client input: %s", exc)
        return Response(
            error_body("invalid_value", "a value is out of range for this field"),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        codes = exc.get_codes()
        if isinstance(detail, dict | list):
            message = "invalid input" if isinstance(exc, exceptions.ValidationError) else str(exc)
            code = "validation_failed" if isinstance(exc, exceptions.ValidationError) else str(codes)
            response.data = error_body(code, message, response.data)
        else:
            response.data = error_body(str(codes), str(detail))
    return response


class JSONParser(DrfJSONParser):
    """DRF's JSON parser, with a body nested deeper than the standard library's parser recurses (a
    thousand levels of `[[[`) refused as malformed instead of escaping as a RecursionError."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - the body nests too deeply") from exc


class JSONRenderer(DrfJSONRenderer):
    """DRF's JSON renderer (UTF-8), which writes `\\uXXXX` escapes instead when the data holds
    text UTF-8 cannot encode: an unpaired surrogate a client sent, echoed back in an error message
    ("\\ud800" is not a valid choice), failed the response with a UnicodeEncodeError."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(DrfJSONRenderer):
    ensure_ascii = True


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <secret>` with a key issued to an account (accounts.ApiKey)."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <key>'")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("API key must be ASCII") from exc
        from accounts.selectors import api_key_authenticate

        key = api_key_authenticate(secret=secret)
        if key is None:
            raise exceptions.AuthenticationFailed("unknown, revoked or expired API key")
        return (key.principal(), key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
