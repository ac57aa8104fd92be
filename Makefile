# Shutter: developer and CI entry points. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CELERY_WORKER_ARGS ?= -Q media,feed,search,default --concurrency 2 -l info
CELERY_IO_WORKER_ARGS ?= -Q io -P gevent --concurrency 200 -l info
FLOWER_PORT ?= 5555
PYTEST_ARGS ?=
BENCH_READS_ARGS ?=

.PHONY: help venv run run-production-layout test lint-imports migrate worker worker-io flower bench-pipeline bench-feeds bench-reads bench-search bench-realtime bench-push clean

help:
	@echo "make venv            create .venv and install requirements-test.txt"
	@echo "make run             the whole stack (API, worker, beat, Flower, embedded redis)"
	@echo "make run-production-layout  the Procfile (honcho) against the local PostgreSQL, Redis, RabbitMQ, memcached"
	@echo "make test            the import contracts (lint-imports), then the suite on the production stack, then the embedded one"
	@echo "make migrate         alembic upgrade head"
	@echo "make worker          the Celery worker for media, feed, search, default (CELERY_WORKER_ARGS)"
	@echo "make worker-io       the io queue's worker, a gevent pool (CELERY_IO_WORKER_ARGS)"
	@echo "make flower          Flower on 127.0.0.1:$(FLOWER_PORT)"
	@echo "make bench-pipeline  bench/pipeline.py"
	@echo "make bench-feeds     bench/feeds.py"
	@echo "make bench-reads     bench/reads.py: every read endpoint beside the feed (BENCH_READS_ARGS=\"--stack embedded\")"
	@echo "make bench-search    bench/search.py"
	@echo "make bench-realtime  bench/realtime.py"
	@echo "make bench-push      bench/push.py"
	@echo "make clean           remove .venv and caches (var/ data is kept)"

venv: $(STAMP)

# Re-installs only when a requirements file changes (or .venv is gone).
# Prefers python3.11 when PYTHON is left at its default; needs >= 3.11.
$(STAMP): requirements.txt requirements-test.txt
	@set -e; \
	py="$(PYTHON)"; \
	if [ "$$py" = python3 ] && python3.11 -c '' >/dev/null 2>&1; then py=python3.11; fi; \
	if ! "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
		echo "error: Shutter needs Python >= 3.11; '$$py' is missing or older (set PYTHON=...)" >&2; \
		exit 1; \
	fi; \
	if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
		echo "$(VENV) uses an old Python: recreating it"; rm -rf $(VENV); \
	fi; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV); fi
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-test.txt
	@touch $(STAMP)

run: venv
	$(PY) scripts/run.py

# The production process layout (Procfile) on this machine's servers (../shared/SERVICES.md).
# Override any of them: make run-production-layout DATABASE_URL=...
PRODUCTION_LAYOUT_ENV ?= \
	DATABASE_URL=$${DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/shutter} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//} \
	MEMCACHED_SERVERS=$${MEMCACHED_SERVERS:-127.0.0.1:11211}

run-production-layout: venv
	@mkdir -p var
	-createdb -h 127.0.0.1 -U postgres shutter 2>/dev/null  # once; an existing database is fine
	$(PRODUCTION_LAYOUT_ENV) $(PY) -m alembic upgrade head
	$(PRODUCTION_LAYOUT_ENV) $(PY) scripts/procfile.py start -f Procfile  # honcho, 30 s to stop (not 5)

test: venv
	$(VENV)/bin/lint-imports --no-cache
	bash scripts/test.sh $(PYTEST_ARGS)

lint-imports: venv
	$(VENV)/bin/lint-imports --no-cache

migrate: venv
	@mkdir -p var
	$(PY) -m alembic upgrade head

worker: venv
	$(PY) -m celery -A worker:celery worker -n worker@%h $(CELERY_WORKER_ARGS)

worker-io: venv
	$(PY) -m celery -A worker:celery worker -n io@%h $(CELERY_IO_WORKER_ARGS)

flower: venv
	$(PY) -m celery -A worker:celery flower --address=127.0.0.1 --port=$(FLOWER_PORT)

bench-pipeline: venv
	$(PY) bench/pipeline.py

bench-feeds: venv
	$(PY) bench/feeds.py

bench-reads: venv
	$(PY) bench/reads.py $(BENCH_READS_ARGS)

bench-search: venv
	$(PY) bench/search.py
bench-realtime: venv
	$(PY) bench/realtime.py
bench-push: venv
	$(PY) bench/push.py

clean:
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
