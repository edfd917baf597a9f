"""Settings for the hordak side of the ledger benchmark.

The database comes from HORDAK_BENCH_DATABASE_URL, a fresh database that bench/ledger_bench.py
creates and drops around the run. Everything else is the least hordak needs.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

_url = urlparse(os.environ["HORDAK_BENCH_DATABASE_URL"])

SECRET_KEY = "hordak-benchmark-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "mptt",
    "hordak",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or "postgres"),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": unquote(_url.hostname or ""),
        "PORT": str(_url.port or ""),
    }
}
DEFAULT_CURRENCY = "USD"
HORDAK_CURRENCIES = ["USD"]
CURRENCIES = ["USD"]
HORDAK_DECIMAL_PLACES = 2
