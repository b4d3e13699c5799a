# Every target sets up what it needs: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen --all-packages --all-extras

.PHONY: setup demo test conformance lint typecheck check clean

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.4"
	$(UV) sync --frozen --all-packages --all-extras

demo: setup
	$(RUN) cozemq demo

lint: setup
	$(RUN) ruff check src backends tests

typecheck: setup
	$(RUN) mypy

check: lint typecheck

test: check
	$(RUN) pytest

conformance: setup
	$(RUN) pytest tests/conformance

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
