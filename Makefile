# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPORT ?= report

.PHONY: demo test bench snapshots clean

$(BIN)/toolkit: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,course]'
	touch $@

demo: $(BIN)/toolkit  ## grade the instructor's solutions and write the report with plots
	$(BIN)/toolkit run solutions/ --report $(REPORT)

test: $(BIN)/toolkit  ## the whole test suite
	$(BIN)/python -m pytest -q

bench: $(BIN)/toolkit  ## speed and memory figures (see benchmarks/README.md)
	$(BIN)/python benchmarks/run.py

snapshots: $(BIN)/toolkit  ## re-record the public snapshots from solutions/
	$(BIN)/toolkit record solutions/

clean:
	rm -rf $(VENV) $(REPORT) .pytest_cache
