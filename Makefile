# XES Portal. Quick start: `make run` (portal at http://127.0.0.1:8000), `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PIP_INSTALL := $(PIP) install --disable-pip-version-check -q -c requirements.lock

# Tests talk to the real PostgreSQL and Redis (see DESIGN.md); override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/xes_portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint bench messages static clean help

help:
	@echo "make run    install, migrate, load demo data, start portal + worker + embedded queue"
	@echo "make test   the whole test suite (needs PostgreSQL and Redis on 127.0.0.1)"
	@echo "make lint   ruff, mypy, manage.py check, makemigrations --check"

$(PY):
	@py=$$(./scripts/find-python.sh) && echo "using $$py" && $$py -m venv $(VENV)

$(VENV)/.installed-run: $(PY) requirements.txt requirements.lock
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run requirements-dev.txt
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

# runportal starts an embedded PostgreSQL and queue server, migrates, loads the demo data, then
# serves the portal with a worker and the periodic jobs.
run: $(VENV)/.installed-run
	$(PY) manage.py runportal

test: $(VENV)/.installed-dev
	@./scripts/ensure-chromium.sh
	DJANGO_ENV=test DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
		$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/xes_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_SES_SECONDS ?= 60

# Measured figures (never timed tests), printed as tables, each goal as a ratio or a limit measured
# in the same run: the credit API; render + MIME per core against Django's path; the pipeline end to
# end against django-post-office and queueing 1,000,000 recipients; the SES send path against a
# local SES v2 stand-in and rate adherence with 4 workers; the open/click endpoints under gunicorn
# with a local load generator and COPY into PostgreSQL; reports over 10,000,000 events (about 20
# minutes in all).
bench: $(VENV)/.installed-dev
	@$(PY) scripts/ensure-database.py "$(BENCH_DATABASE_URL)"
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(PY) manage.py migrate -v0
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(PY) manage.py bench_credits
	DATABASE_URL="$(BENCH_DATABASE_URL)" $(PY) manage.py bench_render
	DATABASE_URL="$(BENCH_DATABASE_URL)" REDIS_URL="$(BENCH_REDIS_URL)" $(PY) manage.py bench_pipeline
	DATABASE_URL="$(BENCH_DATABASE_URL)" REDIS_URL="$(BENCH_REDIS_URL)" $(PY) manage.py bench_ses --seconds $(BENCH_SES_SECONDS)
	DATABASE_URL="$(BENCH_DATABASE_URL)" REDIS_URL="$(BENCH_REDIS_URL)" $(PY) manage.py bench_tracking
	DATABASE_URL="$(BENCH_DATABASE_URL)" REDIS_URL="$(BENCH_REDIS_URL)" $(PY) manage.py bench_analytics

# Re-extract and compile the translations (needs GNU gettext). The .mo files are committed.
messages: $(VENV)/.installed-dev
	$(PY) manage.py makemessages -l de --ignore=.venv --ignore=staticfiles --no-obsolete
	$(PY) manage.py compilemessages -l de --ignore=.venv

static:
	./scripts/vendor-static.sh

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .mypy_cache .ruff_cache
