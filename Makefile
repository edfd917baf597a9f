# The README's commands. `make` builds .venv on first use; everything else runs inside it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench-ledger bench-close bench-ingest bench-authorize serve worker beat migrate db-stop clean fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py scenario scenarios/october-2026.yaml --format text

test: $(STAMP)
	$(BIN)/pytest

# schemathesis against the live OpenAPI schema of a seeded throwaway database (tests/fuzz/run.py).
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_bench.py

# The month-end close of 10,000 postpaid accounts x 20 models (issue 5); own database, dropped after.
bench-close: $(STAMP)
	$(BIN)/python bench/close_bench.py

# Usage over HTTP (gunicorn) against the raw COPY ceiling, in one run (issue 4); own database, dropped after.
bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest_bench.py

# Authorization p50/p99 while a gateway client posts usage batches (issue 4); own database, dropped after.
bench-authorize: $(STAMP)
	$(BIN)/python bench/authorize_bench.py

migrate: $(STAMP)
	$(BIN)/python manage.py migrate

serve: migrate
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: $(STAMP)
	$(BIN)/celery -A distributor worker -l info

beat: $(STAMP)
	$(BIN)/celery -A distributor beat -l info

# Stops the embedded PostgreSQL that runs when DATABASE_URL is unset.
db-stop: $(STAMP)
	$(BIN)/python -m distributor.embedded_db stop

clean:
	rm -rf $(VENV) .pgdata
