# Entry points (see README): `make demo`, `make test` (the everyday tier, <= 10 min) and
# `make test-all` (everything, what CI runs, <= 35 min). All create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two pytest-xdist workers, one torch thread each (tests/conftest.py), a test file per worker at a time
# (its module fixtures stay in one process): measured on these 2-core machines, `make test` took 329 s
# this way against 527 s in one process. `make test PYTEST_WORKERS=` runs in one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: demo test test-all lint system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests drive for real (sshd for the SSH runner, ruby for `ruby -c`
# on the Fastfile, chromium for the report's HTML). Installed when running as root.
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/gemmaios build --arch h18p --model tiny

# Every unit, contract, bad-input and Swift test plus one end-to-end path of each kind
# (one gated build, one simulator deploy -> bench -> report, one `swift test`).
test: $(STAMP) system-deps
	$(BIN)/ruff check toolkit tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS) -m "not full"

# Everything: adds the tests marked `full` (more builds, benches and exports end to end).
test-all: $(STAMP) system-deps
	$(BIN)/ruff check toolkit tests benchmarks
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) build
