"""A minimal Django project that runs django-hordak for the ledger benchmark, in its own venv."""
