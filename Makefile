# Two commands: `make run` and `make test`. Both build .venv on first use.
# `make run PORT=8080` serves on another port; a port in use is refused before any work.
PYTHON ?= python3
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
HOME_DIR ?= $(if $(TAGTRAIL_HOME),$(TAGTRAIL_HOME),./data)
STAMP  := $(VENV)/.installed
# Map context for the demo (its towns are all over England): local authority districts, read in place when
# ../shared/data is there (never copied into the repo); `make run BOUNDARIES=` runs without.
BOUNDARIES ?= $(wildcard ../shared/data/england_lad_2024_buc.geojson)

.PHONY: run test venv bench check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/tagtrail demo --home $(HOME_DIR) --port $(PORT)$(if $(BOUNDARIES), --boundaries $(BOUNDARIES))

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/detect.py
	$(BIN)/python benchmarks/stream.py

# The contract examples (../shared/contract/check.py runs the command from each case's
# directory, so it needs an absolute path to tagtrail).
check: $(STAMP)
	$(PYTHON) ../shared/contract/check.py "$(CURDIR)/$(BIN)/tagtrail" ../shared/contract/examples

# Line coverage of trails/, geofence/ and api/ (.coveragerc): the whole suite, then the
# kernel, twin and reference tests again with NUMBA_DISABLE_JIT=1 so the kernels' bodies
# count (under the JIT coverage sees only their `def` lines). Reports in build/coverage/.
KERNEL_TESTS := tests/test_kernels.py tests/test_layout.py tests/test_rules_twins.py tests/test_safe_cuts.py \
                tests/test_detect_vs_reference.py tests/test_reference_examples.py tests/test_incremental.py
coverage: $(STAMP)
	rm -rf build/coverage && mkdir -p build/coverage
	$(BIN)/python -m pytest -n 2 -q --cov --cov-report=
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -n 2 -q --cov --cov-append --cov-report= $(KERNEL_TESTS)
	$(BIN)/python -m coverage html -q && $(BIN)/python -m coverage json -q
	$(BIN)/python -m coverage report --sort=cover | tail -n 25

clean:
	rm -rf $(VENV) .pytest_cache build
