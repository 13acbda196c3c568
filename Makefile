# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo test test-kernels lint format data bench docs clean kernels

$(STAMP): pyproject.toml requirements-cpu.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q -e '.[dev,kernels,hf]'
	@touch $(STAMP)
	@$(MAKE) --no-print-directory kernels

# The sparse CPU kernels (C++, compiled once per machine into ~/.cache/sparsetorch/kernels).
# A failed build does not stop make: sparsetorch then runs their pure-torch twin.
kernels: $(STAMP)
	-@$(BIN)/python -m sparsetorch.kernels.cpu --quiet

data:
	@bash scripts/ensure-data.sh

demo: $(STAMP) data
	$(BIN)/sparsetorch demo

test: $(STAMP) data
	$(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-kernels

# The Triton kernels (band attention, BSR, 2:4) run in Triton's CPU interpreter against their
# references: Triton is installed where a wheel exists for this machine (the CPU wheel of torch
# ships none); without one this step says so and runs nothing.
TRITON_PIN := triton==3.6.0
test-kernels: $(STAMP)
	@$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/pip install -q '$(TRITON_PIN)' \
		|| echo "no $(TRITON_PIN) wheel for this machine: the kernels' interpreter tests do not run"
	@if $(BIN)/python -c "import triton" 2>/dev/null; then \
		TRITON_INTERPRET=1 $(BIN)/python -m pytest -q -m "not gpu" \
			tests/kernels tests/deploy tests/attention/test_bands.py \
			tests/attention/test_bands_tokens.py; fi

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# the documentation site from docs/ (API reference from the docstrings) into site/; any
# warning (a broken link, an unreadable docstring) fails the build
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP) data
	$(BIN)/python benchmarks/formats.py

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .ruff_cache
