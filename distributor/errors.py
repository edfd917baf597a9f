"""Business-rule failures. Services raise these; the API renders them as 4xx with a message and
details (distributor/api.py), the admin shows the message, the scenario command prints it."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request that breaks a business rule: the caller can act on `message` and `details`."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(ApplicationError):
    code = "validation_failed"


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class PermissionRefused(ApplicationError):
    status_code = 403
    code = "permission_denied"


class Busy(ApplicationError):
    """A lock could not be had in time; the caller may retry."""

    status_code = 503
    code = "busy"
