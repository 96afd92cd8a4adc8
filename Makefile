# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install, and run the nightly job once (Prefect flow: scan, analyse,
#               summary) over a generated demo library, or PHOTOS=/path/to/photos for your own
#   make test   create .venv, install, and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install clean bench reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,local,dask]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

ifdef PHOTOS
# The nightly job once, over your folder: scan, analyse, summary (exit 1 if some files failed).
run: $(STAMP)
	$(BIN)/catalog run "$(PHOTOS)"
else
DEMO := .demo
export CATALOG_DB ?= $(CURDIR)/$(DEMO)/catalog.db
run: $(STAMP)
	$(BIN)/catalog demo $(DEMO)/photos
	$(BIN)/catalog run $(DEMO)/photos
	$(BIN)/catalog duplicates
	@echo '$$ catalog search sunset'
	@$(BIN)/catalog search sunset
	@echo '$$ catalog search "paris trip" --color navy'
	@$(BIN)/catalog search '"paris trip"' --color navy
	@echo '$$ catalog search rome'
	@$(BIN)/catalog search rome
	@echo '$$ catalog search trattoria'
	@$(BIN)/catalog search trattoria
	@echo 'Browse it: CATALOG_DB=$(DEMO)/catalog.db $(BIN)/catalog serve   (then open http://127.0.0.1:8001)'
endif

# Tests run in parallel processes (pytest-xdist), one per core up to four; PYTEST_WORKERS=-n0 runs them in one.
PYTEST_WORKERS ?= -n auto --maxprocesses=4 --dist worksteal
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Every benchmark against its real peer (about 20 minutes; figures go to docs/benchmarks.md).
# One at a time: make bench BENCH=scan BENCH_ARGS=--quick
BENCH ?= scan quota prepare analyze search flow
bench: $(STAMP)
	command -v b3sum >/dev/null || (apt-get update && apt-get install -y b3sum jdupes)
	for b in $(BENCH); do $(BIN)/python bench/$$b.py $(BENCH_ARGS) || exit 1; done

# The fault suite (also part of make test), its figures written to docs/reliability.md.
reliability: $(STAMP)
	$(BIN)/python tests/faults/report.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
