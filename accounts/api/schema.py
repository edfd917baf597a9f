"""Teaches drf-spectacular the API-key authentication, so the schema documents a bearer scheme
(and schemathesis sends the key where the schema says)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "distributor.api.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer dk_...`. Its account's subtree is its scope.",
        }
