# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPORT ?= report

.PHONY: demo test bench snapshots clean sandbox browser

# pip compiles what it installs on one core; compileall uses every core (a file written for a newer
# Python, as torch ships one, does not compile and is skipped, as pip skips it)
COMPILE = $(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true

$(BIN)/toolkit: pyproject.toml constraints.txt  ## the toolkit and what grading needs: all `make demo` installs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e .
	$(COMPILE)
	touch $@

$(VENV)/.extras: $(BIN)/toolkit  ## pytest, nbgrader, Dask, the profiler: what the tests and benchmarks add
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[test,course,grid,bench]'
	$(COMPILE)
	touch $@

sandbox:  ## bubblewrap isolates the submissions `toolkit grade` runs; without it: resource limits only
	@command -v bwrap >/dev/null || { apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	  || sudo -n apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
	  || echo "note: bubblewrap is not installed and could not be (no apt-get or no root): submissions are graded with resource limits only; see README, 'Grading untrusted code'"

browser:  ## Debian's Chromium, which tests/test_pages.py drives with Playwright (never `playwright install`: no browser download)
	@test -x /usr/bin/chromium || { s=; [ "$$(id -u)" = 0 ] || s="sudo -n"; \
	  { $$s apt-get install -y -q chromium || { $$s apt-get update -q && $$s apt-get install -y -q chromium; }; } >/dev/null 2>&1; } \
	  || echo "note: Chromium is not installed and could not be (no apt-get or no root): tests/test_pages.py is skipped; apt-get install chromium"

demo: $(BIN)/toolkit sandbox  ## grade the instructor's solutions and write the report with plots
	$(BIN)/toolkit run solutions/ --report $(REPORT)
	@echo "toolkit is installed in $(VENV), not on your PATH: call it as $(BIN)/toolkit (e.g. $(BIN)/toolkit --help)," \
	  "or run 'source $(BIN)/activate' once per shell, then toolkit"

test: $(VENV)/.extras sandbox browser  ## the whole test suite (three files at a time: see addopts in pyproject.toml)
	$(BIN)/python -m pytest -q

BENCHMARKS := run tokenizer throughput feedback grading

bench: $(VENV)/.extras  ## every benchmarks/*.py figure (see benchmarks/README.md); fails if a target is missed
	@failed=; for b in $(BENCHMARKS); do \
	  echo "== benchmarks/$$b.py"; $(BIN)/python -u benchmarks/$$b.py || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "bench: target missed or run failed in:$$failed"; exit 1; fi

snapshots: $(BIN)/toolkit  ## re-record the public snapshots from solutions/
	$(BIN)/toolkit record solutions/

clean:
	rm -rf $(VENV) $(REPORT) .pytest_cache
