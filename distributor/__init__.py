"""The Django project: settings, URLs, the Celery app, money and error helpers."""

from .celery import app as celery_app

__all__ = ["celery_app"]
