"""Shared fixtures. The suite runs on real PostgreSQL (DATABASE_URL or the embedded server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from distributor.celery import app as celery_app


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    from settlement.api.views import account_refs_forget

    cache.clear()
    account_refs_forget()
    yield


@pytest.fixture(autouse=True)
def _celery_eager() -> Iterator[None]:
    """Tasks run in-process unless a test asks for the real worker (tests/distributor/test_celery_worker.py)."""
    # The app reads Django settings under the CELERY namespace, where the prefixed key wins over
    # the bare one: the override has to use the prefixed name or it is silently ignored.
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.CELERY_TASK_EAGER_PROPAGATES = True
    yield
    celery_app.conf.CELERY_TASK_ALWAYS_EAGER, celery_app.conf.CELERY_TASK_EAGER_PROPAGATES = previous
