# The README's two commands.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/priorauth: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/priorauth

demo: setup  ## evaluate the bundled example cases
	$(BIN)/priorauth evaluate examples/cases/*.yaml

test: setup  ## the whole test suite, acceptance scenarios included
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/bench_evaluate.py

clean:
	rm -rf $(VENV) .pytest_cache
