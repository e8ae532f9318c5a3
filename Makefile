# Cruddur: `make run` starts the stack on embedded defaults; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
BACKEND := backend-flask
FRONTEND := frontend-react-js
VENV := $(BACKEND)/.venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := $(FRONTEND)/node_modules/.installed

.PHONY: setup setup-backend setup-frontend setup-browser setup-postgres run test test-backend test-frontend \
	test-e2e lint format bench bench-smoke setup-bench-peers soak lock clean db-migrate

setup: setup-backend setup-frontend

setup-backend: $(VENV_STAMP)
$(VENV_STAMP): $(BACKEND)/requirements.txt $(BACKEND)/requirements-dev.txt
	@echo "==> backend: creating $(VENV) from pinned requirements"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(BACKEND)/requirements-dev.txt
	touch $@

setup-frontend: $(NODE_STAMP)
$(NODE_STAMP): $(FRONTEND)/package-lock.json
	@echo "==> frontend: npm ci from the lock file"
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser tests (never a downloaded browser build).
setup-browser:
	@bin/install-chromium

# Debian's PostgreSQL binaries for the database tests (a private cluster for the outage tests).
setup-postgres:
	@bin/install-postgresql

run: setup
	@bin/run

test: setup setup-browser setup-postgres setup-bench-peers
	@bin/test-all

# The backend suite on every core (pytest-xdist, two workers per core: most tests wait on servers and
# sockets, not the CPU), each test module whole on one worker; then the tests marked `serial`, which
# measure time, alone. Both parts always run; the target fails if either did.
TEST_WORKERS ?= $(shell echo $$(( 2 * $$(nproc) )))
test-backend: setup-backend setup-postgres setup-bench-peers
	cd $(BACKEND) && { .venv/bin/pytest -n $(TEST_WORKERS) --dist loadscope -m "not serial"; parallel=$$?; \
		.venv/bin/pytest -m serial; serial=$$?; exit $$(( parallel || serial )); }

test-frontend: setup-frontend
	cd $(FRONTEND) && npm test

test-e2e: setup setup-browser
	cd $(FRONTEND) && npm run e2e

lint: setup-backend setup-frontend
	cd $(BACKEND) && .venv/bin/ruff check . ../aws && .venv/bin/ruff format --check . ../aws
	cd $(FRONTEND) && npm run lint

format: setup-backend
	cd $(BACKEND) && .venv/bin/ruff format . && .venv/bin/ruff check --fix .

# Apply the schema migrations to DATABASE_URL now (the app also applies them when it starts).
db-migrate: setup-backend
	cd $(BACKEND) && .venv/bin/python -m cruddur.store.migrations

bench: setup-backend
	cd $(BACKEND) && .venv/bin/python -m bench $(BENCH_ARGS)

bench-smoke: setup-backend
	cd $(BACKEND) && .venv/bin/python -m bench --smoke

# The agents `make bench BENCH_ARGS=--peers` compares with, in $(BACKEND)/.venv-bench from
# bench/requirements-peers.txt (the bench also creates it on first use).
setup-bench-peers: setup-backend
	cd $(BACKEND) && .venv/bin/python -m bench.peers

soak: setup-backend
	cd $(BACKEND) && .venv/bin/python -m tests.faults.soak $(SOAK_ARGS)

# Re-pin the backend's dependencies from requirements*.in in clean virtual environments.
lock:
	bin/lock-requirements

clean:
	rm -rf $(VENV) $(BACKEND)/.venv-bench $(FRONTEND)/node_modules $(FRONTEND)/dist test-output bench-output soak-output
