# CollectPro: the two commands are `make run` and `make test`; the rest are their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN_DIR := $(TARGET_DIR)/debug
HTTP_PORT ?= 3000
WS_PORT ?= 3001
DYNAMODB_PORT ?= 8000
SQS_PORT ?= 9324
# `make run PERSIST=1` keeps DynamoDB Local's data in .local/data between runs (slower
# writes: DynamoDB Local then stores to SQLite); by default every run starts empty, in memory.
PERSIST ?= 0
DATA_DIR := $(if $(filter 1,$(PERSIST)),$(CURDIR)/.local/data,)
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help setup build run test lint fmt-check clippy template-lint unit-and-integration invoke bench-gateway release

help:
	@echo "make run    - the whole system locally (web app :$(WEB_PORT), HTTP API :$(HTTP_PORT), WebSocket :$(WS_PORT)); Ctrl-C stops it"
	@echo "make test   - every test: fmt, clippy, template lint, unit, integration, end to end"
	@echo "make invoke FN=<function> EVENT=events/<file>.json - one invocation, like sam local invoke"
	@echo "make bench-gateway - gateway overhead, cold starts and RSS"
	@echo "make bench-cold - every function's cold start, first request and memory in the release build (BENCH_COLD_RUNS=N)"
	@echo "make fuzz   - schemathesis over the whole API as each role, random seed (FUZZ_EXAMPLES=N)"
	@echo "make load   - load test of the whole stack vs DynamoDB Local's own ceiling, capacity plan (docs/capacity.md)"
	@echo "make cost   - AWS cost per million requests of the last make load's mix (docs/cost.md)"

setup:
	@bash infra/setup.sh

# The fast profile: dependencies optimised (see [profile.dev.package."*"]), our code quick to rebuild.
build: setup
	cargo build --workspace --bins

# The seeded admin's password: COLLECTPRO_ADMIN_PASSWORD, else this local default (printed).
export COLLECTPRO_ADMIN_PASSWORD ?= collectpro-local-admin
DEMO ?= 0

# The web app is built for these ports and served on http://localhost:$(WEB_PORT) (vite preview).
WEB_PORT ?= 5173
run: build
	DYNAMODB_PORT=$(DYNAMODB_PORT) SQS_PORT=$(SQS_PORT) DYNAMODB_DATA_DIR=$(DATA_DIR) DEMO=$(DEMO) WEB_PORT=$(WEB_PORT) \
	  infra/stack.sh infra/run-local.sh $(BIN_DIR) $(HTTP_PORT) $(WS_PORT)

invoke: build
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=health EVENT=events/apigw-http-health.json"; exit 2; }
	infra/stack.sh $(BIN_DIR)/local-gateway invoke --template template.yaml --bin-dir $(BIN_DIR) \
	  --function $(FN) --event $(EVENT)

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

template-lint: setup
	.local/venv/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 .local/venv/bin/sam validate --lint --region us-east-1 --template-file template.yaml

lint: fmt-check clippy template-lint

# Unit tests need nothing; integration and end-to-end tests find DynamoDB Local and moto
# through the endpoint variables infra/stack.sh exports, and the function binaries built above.
unit-and-integration: build
ifeq ($(NEXTEST),yes)
	infra/stack.sh cargo nextest run --workspace --no-fail-fast
else
	infra/stack.sh cargo test --workspace --no-fail-fast
endif

test: lint unit-and-integration web-test web-e2e api-fuzz docs-browser-test

# The API against its own OpenAPI document: schemathesis with every check, as viewer, agent,
# manager and admin, on a stack started for it on free ports (infra/fuzz.sh, settings and
# their reasons in infra/schemathesis.toml). `make test` uses a fixed seed; `make fuzz` a
# random one (FUZZ_EXAMPLES=30 for a longer run; the seed is printed to replay it with
# FUZZ_SEED=<seed>). And the docs page in headless Chromium (infra/docs-browser-test.sh).
FUZZ_EXAMPLES ?= 10
.PHONY: api-fuzz fuzz docs-browser-test
api-fuzz: build
	FUZZ_SEED=$${FUZZ_SEED:-42} FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) infra/fuzz.sh $(BIN_DIR)

fuzz: build
	FUZZ_SEED=$${FUZZ_SEED:-random} FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) infra/fuzz.sh $(BIN_DIR)

docs-browser-test: build
	infra/docs-browser-test.sh $(BIN_DIR)

# The web app (web/): type check and unit tests (Vitest + React Testing Library, jsdom), then
# end to end in Debian's Chromium (playwright-core) against this stack started by the run on
# free ports, with the SPA built for them (web/e2e/run.mjs; screenshots and axe results in
# web/test-results/).
.PHONY: web-test web-e2e
web-test: setup
	cd web && npx tsc -b && npx vitest run

web-e2e: build
	cd web && COLLECTPRO_BIN_DIR=$(BIN_DIR) node e2e/run.mjs

# Benchmarks run the bench-fast profile's binaries (see Cargo.toml; BENCH_PROFILE=dev measures
# the test build instead); the gateway and the harnesses find them through COLLECTPRO_BIN_DIR.
BENCH_PROFILE ?= bench-fast
BENCH_DIR := $(TARGET_DIR)/$(if $(filter dev,$(BENCH_PROFILE)),debug,$(BENCH_PROFILE))
BENCH_ENV := COLLECTPRO_BIN_DIR=$(BENCH_DIR)

.PHONY: bench-build
bench-build: setup
	cargo build --profile $(BENCH_PROFILE) --workspace --bins

bench-gateway: bench-build
	$(BENCH_ENV) infra/stack.sh cargo run --quiet --profile $(BENCH_PROFILE) -p local-gateway --bin bench-gateway -- --template template.yaml --bin-dir $(BENCH_DIR)

# What `sam build` runs for each function (cargo lambda build --release --arm64).
release:
	cargo build --release --workspace --bins

# Cold starts in the release build (what ships): the functions (and collectpro-admin, which
# seeds the admin) built --release, then each function started cold BENCH_COLD_RUNS times
# through the local gateway with a realistic first request; prints Init Duration, Duration and
# Max Memory Used (p50/max, from the REPORT lines) and the stripped binary size per function
# (tests/examples/bench_cold.rs; figures and memory sizes in docs/performance.md).
BENCH_COLD_RUNS ?= 20
FUNCTION_PACKAGES := $(notdir $(wildcard functions/*)) collectpro-admin
.PHONY: bench-cold
bench-cold: setup
	cargo build --release $(addprefix -p ,$(FUNCTION_PACKAGES)) --bins
	COLLECTPRO_BIN_DIR=$(TARGET_DIR)/release BENCH_COLD_RUNS=$(BENCH_COLD_RUNS) \
	  infra/stack.sh cargo run --quiet -p e2e --example bench_cold

# DynamoDB calls and read/write units per request of each route: a tour of the API through
# the whole local stack, figures from the requests' own log lines (tests/examples/route_capacity.rs).
.PHONY: capacity
capacity: build
	infra/stack.sh cargo run --quiet -p e2e --example route_capacity

# Load test (docs/capacity.md): the mixed load against a `make run` stack on ports of its own
# (LOAD_HTTP_PORT 3400, LOAD_WS_PORT 3401, LOAD_DYNAMODB_PORT 8400, LOAD_SQS_PORT 9440; started
# and stopped by load/run.sh unless one answers there), LOAD_STEPS requests/s (comma-separated)
# LOAD_STEP_SECS each after LOAD_WARMUP_SECS; then DynamoDB Local alone with the same calls,
# the consistency check and the capacity plan. Figures in target/load/ (last-run.json,
# report.html). `make cost` prints the AWS cost per million requests of the last run's mix
# (COST_RUNS="a.json b.json c.json": medians of several runs).
.PHONY: load cost
load: bench-build
	$(BENCH_ENV) LOAD_OUT=$(CURDIR)/target/load load/run.sh

COST_RUNS ?= target/load/last-run.json
cost:
	cargo run --quiet -p load --bin cost -- $(COST_RUNS)

# Accounts (issue 6): N realistic accounts into `make run`'s DynamoDB Local (port 8000,
# tables collectpro-local-*); `make seed DEMO=1` loads a few hundred.
N ?= 100000
seed: build
	AWS_ENDPOINT_URL_DYNAMODB=$${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:$(DYNAMODB_PORT)} \
	  AWS_REGION=$${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-local} \
	  AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-local} AWS_EC2_METADATA_DISABLED=true \
	  $(BIN_DIR)/seed $(if $(filter 1 yes true,$(DEMO)),--demo,-n $(N))

# GET /accounts/{id} and a filtered list page through the gateway vs the raw DynamoDB calls,
# at BENCH_ACCOUNTS accounts (default 100000; e.g. BENCH_ACCOUNTS=20000 for a quick run).
bench-accounts: bench-build
	$(BENCH_ENV) infra/stack.sh $(BENCH_DIR)/bench-accounts

# Recording a payment through the gateway vs the raw TransactWriteItems it issues (p50/p99),
# and accepted payments per second on one account under 16-way contention. Prints figures;
# never fails on a timer.
.PHONY: bench-payments
bench-payments: bench-build
	$(BENCH_ENV) infra/stack.sh cargo test --quiet --profile $(BENCH_PROFILE) -p e2e --test payments_bench -- --ignored --nocapture

# Bulk job of N accounts (202 -> completed, real bulk-worker via the gateway's SQS source)
# against a raw parallel UpdateItem loop on the same DynamoDB Local, run before and after the
# job, stream mappings disabled; prints the ratio to the loops' mean.
N ?= 10000
bench-bulk: bench-build
	$(BENCH_ENV) infra/stack.sh cargo run --quiet --profile $(BENCH_PROFILE) -p bulk-worker --example bench-bulk -- $(N)

# Placement import of ROWS rows (POST /imports -> upload to S3 -> completed, real importer via
# moto's notification and the gateway's SQS source) against a raw BatchWriteItem loop writing
# the same accounts (item + reference claim) to a copy of the Accounts table (same GSIs, no
# stream consumer) on the same DynamoDB Local; prints the ratio. Never fails on a timer.
ROWS ?= 100000
.PHONY: bench-import
bench-import: bench-build
	$(BENCH_ENV) infra/stack.sh cargo run --quiet --profile $(BENCH_PROFILE) -p importer --example bench-import -- $(ROWS)

# The dashboard aggregates recomputed from `make run`'s tables (port 8000, prefix
# collectpro-local-) and compared with the stored ones: prints each drifting counter, exits 1
# on drift. `make reconcile REPAIR=1` sets drifting counters to the recomputed values; only
# on an idle stack (no writes or stream records in flight). See docs/dashboard.md.
REPAIR ?= 0
.PHONY: reconcile
reconcile: build
	AWS_ENDPOINT_URL_DYNAMODB=$${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:$(DYNAMODB_PORT)} \
	  AWS_REGION=$${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-local} \
	  AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-local} AWS_EC2_METADATA_DISABLED=true \
	  $(BIN_DIR)/collectpro-admin reconcile --table-prefix collectpro-local- \
	  $(if $(filter 1 yes true,$(REPAIR)),--repair,)

# WebSocket push through the whole local path: BENCH_SUBSCRIBERS (50) clients on `payments`,
# BENCH_PAYMENTS (100) payments POSTed by BENCH_WRITERS (4) writers; prints p50/p99 from POST to
# each subscriber's message and the notifier's delivered messages/s. Never fails on a timer.
.PHONY: bench-realtime
bench-realtime: bench-build
	$(BENCH_ENV) infra/stack.sh $(BENCH_DIR)/bench-realtime

# Fault runs (docs/faults.md), full versions: DynamoDB faults through the gateway's fault
# proxy, kill -9 of bulk-worker / notifier / payments instances mid-work, and a 10 s DynamoDB
# Local outage under load. Each prints a FIGURE line; `make test` runs the short versions.
.PHONY: chaos
chaos: build
	infra/stack.sh cargo test -p e2e --test chaos_e2e -- --ignored --nocapture --test-threads 1
