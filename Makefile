# rnnbench — `make help` lists the targets.
VENV   ?= .venv
PY     ?= $(VENV)/bin/python
# real datasets for tests (MNIST, PTB, Tiny Shakespeare); tests skip what is missing
RNNBENCH_DATA ?= $(abspath ../shared/data)
export RNNBENCH_DATA

.PHONY: help install run test test-full bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## create .venv and install rnnbench with its dev extras
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@# build the compiled kernels now rather than on first use (one warning line, and the Python loop, where it cannot)
	$(PY) -c "from rnnbench.cells.kernels import native; native.available()"

run:  ## train the embedded default (addition, seq2seq LSTM 128) on the CPU
	$(PY) -m rnnbench train

# one pytest worker per core (pytest-xdist); most of the suite's time is subprocess runs on one thread
test:  ## the fast test suite (< 10 min on 2 CPU cores)
	$(PY) -m pytest -q -n auto --dist worksteal

test-full:  ## every test, the slow ones too
	$(PY) -m pytest -q -n auto --dist worksteal -m "slow or not slow"

bench:  ## cell throughput table (forward+backward, ratios to fused nn.LSTM)
	$(PY) -m rnnbench bench

clean:  ## remove caches (keeps outputs/)
	rm -rf .pytest_cache build dist *.egg-info
