"""Reads of the account tree, price lists and API keys."""

from __future__ import annotations

from typing import Any


def api_key_authenticate(*, secret: str) -> Any | None:
    """The active API key with this secret, or None. (Implemented with the ApiKey model, issue 3.)"""
    return None
