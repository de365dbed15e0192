# The README's two commands are `make run` and `make test`; CI runs `make test` too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck fmt bench bench-deps chaos browser-deps client-deps client-types clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: API + worker on the embedded database (or DATABASE_URL), with a demo account.
run: $(STAMP)
	$(BIN)/aijobs dev

## test: lint, type-check and the whole test suite (unit, integration, e2e, reliability subset).
test: $(STAMP) browser-deps client-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadgroup -m "not chaos"

browser-deps:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium.sh

# The npm projects the tests build and run (Node 20, npm): exactly their committed lockfiles.
# Optional packages (Next's native compiler) are left out: the tests only type-check the
# example; run `npm install` in examples/nextjs for `next dev`.
NPM_PROJECTS := clients/typescript examples/nextjs
client-deps: $(addsuffix /node_modules/.ci-stamp,$(NPM_PROJECTS))

%/node_modules/.ci-stamp: %/package-lock.json %/package.json
	npm ci --prefix $* --omit=optional --no-audit --no-fund --loglevel=error
	touch $@

## client-types: regenerate clients/typescript's spec copy and types after an API change.
client-types: $(STAMP)
	$(BIN)/aijobs openapi --out clients/typescript/openapi.json
	npm --prefix clients/typescript run generate

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

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
	rm -rf $(VENV) .aijobs test-artifacts $(addsuffix /node_modules,$(NPM_PROJECTS))
