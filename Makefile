# The README's two commands are `make run` and `make test`; CI runs `make test` too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# `make run` needs the embedded server and the offline provider (extras, not runtime
# dependencies); everything else takes the whole developer set.
RUN_EXTRAS := binary,embedded,offline
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
STAMP := $(VENV)/.installed-dev-$(HASH)

.PHONY: run test lint typecheck fmt bench bench-deps chaos browser-deps pgbouncer-deps client-deps client-types clean image image-test

define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(1)]'
	touch $@
endef

$(RUN_STAMP): pyproject.toml
	$(call install,$(RUN_EXTRAS))

$(STAMP): pyproject.toml
	$(call install,dev)
	touch $(RUN_STAMP)

## run: API + worker on the embedded database (or DATABASE_URL), with a demo account.
run: $(RUN_STAMP)
	$(BIN)/aijobs dev

## test: lint, type-check and the whole test suite (unit, integration, e2e, reliability subset).
test: $(STAMP) browser-deps pgbouncer-deps client-deps
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadgroup -m "not chaos"

browser-deps:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium.sh

pgbouncer-deps:
	@scripts/install-pgbouncer.sh

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

## image: the one image for migrate, api and worker (IMAGE_BASE: any Debian-like base).
IMAGE_BASE ?= debian:bookworm-slim
image:
	docker build --build-arg BASE=$(IMAGE_BASE) -t aijobs:latest .

## image-test: the image on a locally made base, the stack run end to end (root; not in make test).
image-test:
	scripts/image-test.sh

clean:
	rm -rf $(VENV) .aijobs test-artifacts $(addsuffix /node_modules,$(NPM_PROJECTS))
