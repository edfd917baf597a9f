"""Shared fixtures. The suite runs on real PostgreSQL (DATABASE_URL or the embedded server)."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()
