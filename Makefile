# Every target sets up what it needs: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen --all-packages --all-extras

.PHONY: setup toolchains demo test conformance bench lint typecheck check clean

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.4"
	$(UV) sync --frozen --all-packages --all-extras

toolchains:
	@bash scripts/ensure-toolchains.sh

demo: setup
	$(RUN) cozemq demo

lint: setup
	$(RUN) ruff check src backends tests

typecheck: setup
	$(RUN) mypy

check: lint typecheck

test: toolchains check
	$(RUN) pytest

conformance: setup
	$(RUN) pytest tests/conformance

# The numbers in docs/performance.md: every workload on every broker, cozemq beside the raw
# client (and FastStream), alternating, three rounds. Not part of `make test` (which runs a
# smoke bench only). Takes about half an hour on 2 cores.
BENCH_COUNT ?= 5000
BENCH := $(RUN) cozemq bench --count $(BENCH_COUNT) --rounds 3
bench: toolchains setup
	mkdir -p docs/performance
	-$(BENCH) --broker nats --json docs/performance/nats-jetstream.json --png docs/performance/nats-jetstream.png
	-$(BENCH) --broker nats --set NATS_USE_JETSTREAM=false --json docs/performance/nats-core.json --png docs/performance/nats-core.png
	-$(BENCH) --broker kafka --json docs/performance/kafka.json --png docs/performance/kafka.png
	-$(BENCH) --broker nsq --json docs/performance/nsq.json --png docs/performance/nsq.png
	-$(BENCH) --broker rmq --json docs/performance/rmq.json --png docs/performance/rmq.png
	-$(BENCH) --broker pulsar --json docs/performance/pulsar.json --png docs/performance/pulsar.png

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
