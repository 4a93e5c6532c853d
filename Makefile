# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv in the checkout when it is missing and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/vigil demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	VENV=$(VENV) scripts/check

# The benchmarks behind BENCHMARKS.md (LFW needs ../shared/data/lfw).
bench: $(VENV)/.installed-test
	$(BIN)/vigil bench embed
	$(BIN)/vigil bench detect
	$(BIN)/vigil bench index
	$(BIN)/vigil bench lfw

clean:
	rm -rf $(VENV) build *.egg-info
