# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps clean

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

test: $(STAMP) system-deps
	$(BIN)/ruff check toolkit tests benchmarks
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build
