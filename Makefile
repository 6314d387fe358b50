# llmgw — the two commands a new user needs: `make run` and `make test`.
# Both create/refresh the virtualenv at .venv first; nothing else to install by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# Test packages, run one pytest session each (each starts its own NATS + PostgreSQL).
TEST_DIRS := libs/common libs/devstack libs/cli services/key-service services/metering services/edge-proxy deploy/tests tests-e2e

.PHONY: help install run test bench soak fuzz clean distclean

help:
	@echo "make run    - run the whole gateway locally (NATS + PostgreSQL started for you)"
	@echo "make test   - run every test (unit, integration, e2e)"
	@echo "make bench  - benchmarks; writes docs/benchmarks.md"
	@echo "make soak   - the fault-under-load scenarios, 10x longer"
	@echo "make fuzz   - proxy, key-service and metering fuzzing with many more examples"
	@echo "make clean  - wipe local state (.llmgw: keys, usage, NATS/Postgres data)"

$(STAMP): requirements-dev.txt deploy/tests/requirements.txt $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[llmgw] installing into $(VENV) (first run takes a minute or two)…"
	@$(PIP) install --upgrade pip
	@$(PIP) install -r requirements-dev.txt -r deploy/tests/requirements.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(BIN)/llmgw-run

test: $(STAMP)
	@$(BIN)/python tests-e2e/run_all_tests.py $(TEST_DIRS)

bench: $(STAMP)
	@$(BIN)/python bench/run_bench.py

# Long versions of the fault and fuzz scenarios (not part of `make test`).
soak: $(STAMP)
	@cd tests-e2e && LLMGW_SOAK_SCALE=10 ../$(BIN)/python -m pytest -q test_faults_under_load.py

fuzz: $(STAMP)
	@cd tests-e2e && LLMGW_FUZZ_EXAMPLES=2000 ../$(BIN)/python -m pytest -q test_proxy_fuzz.py test_hostile_input.py
	@cd services/key-service && LLMGW_FUZZ_EXAMPLES=200 ../../$(BIN)/python -m pytest -q tests/test_schemathesis.py
	@cd services/metering && LLMGW_FUZZ_EXAMPLES=200 ../../$(BIN)/python -m pytest -q tests/test_schemathesis.py

clean:
	rm -rf .llmgw

distclean: clean
	rm -rf $(VENV)
