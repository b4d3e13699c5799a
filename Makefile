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
# smoke bench only). Takes about 30 minutes on 2 cores. Message counts differ by broker so
# every run lasts long enough to measure: NATS and NSQ move ten thousand messages in a second
# or two, RocketMQ and Pulsar take milliseconds per awaited send.
BENCH := $(RUN) cozemq bench --rounds 3
OUT := docs/performance
bench: toolchains setup
	mkdir -p $(OUT)
	-$(BENCH) --count 10000 --broker nats --json $(OUT)/nats-jetstream.json --png $(OUT)/nats-jetstream.png
	-$(BENCH) --count 10000 --broker nats --set NATS_USE_JETSTREAM=false --json $(OUT)/nats-core.json --png $(OUT)/nats-core.png
	-$(BENCH) --count 5000 --broker kafka --json $(OUT)/kafka.json --png $(OUT)/kafka.png
	-$(BENCH) --count 10000 --broker nsq --json $(OUT)/nsq.json --png $(OUT)/nsq.png
	-$(BENCH) --count 2000 --broker rmq --json $(OUT)/rmq.json --png $(OUT)/rmq.png
	-$(BENCH) --count 2000 --broker pulsar --json $(OUT)/pulsar.json --png $(OUT)/pulsar.png

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
