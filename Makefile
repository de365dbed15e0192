# The README's two commands are `make run` and `make test`; CI runs `make test` too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck fmt bench bench-deps chaos browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: API + worker on the embedded database (or DATABASE_URL), with a demo account.
run: $(STAMP)
	$(BIN)/aijobs dev

## test: lint, type-check and the whole test suite (unit, integration, e2e, reliability subset).
test: $(STAMP) browser-deps
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadgroup -m "not chaos"

browser-deps:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: peers side by side (installs pgqueuer and procrastinate in their own venv, and wrk).
bench: $(STAMP) bench-deps
	$(BIN)/python bench/run.py

bench-deps:
	@scripts/install-wrk.sh

## chaos: the long fault-injection soak with its summary table.
chaos: $(STAMP)
	$(BIN)/pytest tests/reliability -m chaos -p no:xdist -s

clean:
	rm -rf $(VENV) .aijobs test-artifacts
