# The two commands of the README: `make run` (a whole server on embedded defaults) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEV    := DEBUG=1 UAA_ISSUER=$${UAA_ISSUER:-http://localhost:$(PORT)}

.PHONY: run test install lint format check-deploy clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Make the embedded defaults' directory (the SQLite file, the filesystem broker; settings create nothing),
# migrate, create a dev key-encryption key, a signing key and an admin user (password printed once),
# then run the web server with a Celery worker and beat on the embedded filesystem broker.
run: $(STAMP)
	mkdir -p "$${UAA_VAR_DIR:-var}/broker/processed"
	$(DEV) $(BIN)/python manage.py migrate --noinput
	$(DEV) $(BIN)/python manage.py bootstrap
	@echo "UAA on http://localhost:$(PORT)/  (admin: http://localhost:$(PORT)/admin/)"
	@# uaa/devrun.py starts runserver and the worker (beat inside) and stops both on Ctrl-C or either's end.
	@$(DEV) $(BIN)/python -m uaa.devrun $(HOST):$(PORT)

# The whole suite on the embedded defaults (SQLite); DATABASE_URL=postgres://... runs it on PostgreSQL.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark (bench/run.py, docs/performance.md): gunicorn as in production against throwaway PostgreSQL
# databases, driven by wrk, with the empty-view ceiling and vanilla django-oauth-toolkit in the same run.
# Not part of `make test`. ARGS="--smoke" for a quick check, ARGS="--rows 1000000" for the big-table mode.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

# ruff (style), import-linter (the layers uaa → accounts → tokens and no cycles), mypy with django-stubs, bandit.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	# django-stubs loads the settings: DEBUG=1 gives them their local defaults (no secret is needed to type-check).
	DEBUG=1 $(BIN)/mypy .
	@# bandit over the three apps ([tool.bandit]); its "nosec encountered" notes about multi-line strings are noise.
	@$(BIN)/bandit -q -c pyproject.toml -r uaa accounts tokens > .bandit.out 2>&1; status=$$?; \
	grep -v "nosec encountered" .bandit.out; rm -f .bandit.out; exit $$status

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .import_linter_cache staticfiles
