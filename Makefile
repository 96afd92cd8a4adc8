# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install, and catalogue a library (a generated demo library by default,
#               or PHOTOS=/path/to/photos for your own)
#   make test   create .venv, install, and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

ifdef PHOTOS
# A real library usually holds a few broken files: scan reports them (exit 1) and we go on.
run: $(STAMP)
	-$(BIN)/catalog scan "$(PHOTOS)"
	$(BIN)/catalog analyze
	$(BIN)/catalog stats
else
DEMO := .demo
export CATALOG_DB ?= $(CURDIR)/$(DEMO)/catalog.db
run: $(STAMP)
	$(BIN)/catalog demo $(DEMO)/photos
	$(BIN)/catalog scan $(DEMO)/photos
	$(BIN)/catalog analyze
	$(BIN)/catalog duplicates
	@echo '$$ catalog search sunset'
	@$(BIN)/catalog search sunset
	@echo '$$ catalog search "paris trip" --color navy'
	@$(BIN)/catalog search '"paris trip"' --color navy
endif

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Scan benchmark against b3sum/find (several minutes; BENCH_ARGS=--quick for a smoke run).
bench: $(STAMP)
	command -v b3sum >/dev/null || (apt-get update && apt-get install -y b3sum jdupes)
	$(BIN)/python bench/scan.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
