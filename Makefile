# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SAMPLE := resources/sample/faults.json
CORES ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-random mutation install sample lint report clean

# The light install (`make run`): the pipeline and the shipped detector on onnxruntime, no torch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

# The tests (and the loaders they check the release with, which need torch) also cover the YOLO path on the CPU,
# so they install the test and the heavy `yolo` extras, torch pinned.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,yolo]'
	touch $(TEST_STAMP)

install: $(STAMP)

$(SAMPLE): $(STAMP) $(wildcard workflow/bioscan_rebuild/synth/*.py)
	rm -rf resources/sample
	$(BIN)/bioscan-rebuild sample resources/sample --records 300 --seed 0

sample: $(SAMPLE)

run: $(SAMPLE)
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default
	@echo "Release: $(CURDIR)/results/release/bioscan5m  (accounting: results/accounting.json)"

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html
	@echo "Report: $(CURDIR)/results/report.html"

lint: $(TEST_STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/ruff check workflow tests

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

# The fast tests in a random order (pytest-randomly; the header prints the seed). Shuffling only: each test's
# own random.seed/numpy seeding is left as in `make test`. Replay an order: make test-random SEED=<seed>.
SEED ?= default
test-random: $(TEST_STAMP)
	$(BIN)/python -m pytest -p randomly --randomly-seed=$(SEED) --randomly-dont-reset-seed -m "not slow"

# Mutation testing of the core modules (mutmut; minutes, not part of `make test`): the score per module, the
# survivors, exit 1 when a module kills under 90 %. One module: make mutation MODULES=geometry.
MODULES ?=
mutation: $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,yolo,mutation]'
	$(BIN)/python bench/mutation.py $(if $(MODULES),--modules $(MODULES))

clean:
	rm -rf results logs benchmarks resources/sample .snakemake
