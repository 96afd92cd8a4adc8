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
run: $(STAMP)
	$(BIN)/catalog scan "$(PHOTOS)"
	$(BIN)/catalog duplicates
else
DEMO := .demo
run: $(STAMP)
	$(BIN)/catalog demo $(DEMO)/photos
	CATALOG_DB=$(DEMO)/catalog.db $(BIN)/catalog scan $(DEMO)/photos
	CATALOG_DB=$(DEMO)/catalog.db $(BIN)/catalog duplicates
endif

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
