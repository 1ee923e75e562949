# The two commands of the README: `make run` (the baseline scenario) and `make test`.
# Both create .venv on first use with a Python >= 3.12 (pyenv picks 3.12 from .python-version).
VENV := .venv
PY := $(shell for p in python3 python3.13 python3.12 python; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: run test lint bench test-fast
$(VENV)/.installed: pyproject.toml
	@test -n "$(PY)" || { echo "liqsim needs Python >= 3.12 (none found on PATH)"; exit 2; }
	@echo "make: creating $(VENV) with $(PY) and installing liqsim and its dependencies into it"
	@echo "make: (first time only; pip lists each package as it goes)"
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --progress-bar off -e '.[test]'
	@touch $@
	@echo "make: $(VENV) is ready"

run: $(VENV)/.installed
	$(VENV)/bin/liqsim run

# lint-imports checks the import contracts of pyproject.toml ([tool.importlinter]): no cycles,
# the core below the tools and views, agents/ on the core only; a broken one names the imports
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -q

# The tests not marked slow or browser (pyproject.toml): about 35 s, for every edit. CI runs `make test`.
# PYTHONDONTWRITEBYTECODE is emptied (= unset) for pytest: with it set, every run compiles sim/,
# agents/ and the test modules from source again and pytest re-rewrites each test module's asserts
# (3.5 s of CPU of the collection's 7, measured); the .pyc files go to __pycache__/ (ignored by git).
test-fast: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q -m "not slow and not browser"

bench: $(VENV)/.installed
	$(VENV)/bin/python experiments/bench_run.py

# The six flagship sweeps (experiments/sweeps/flagship_*.toml), analysed; small outputs are
# copied to results/flagship/ (raw ledgers stay in results/sweeps/). About 10 min on 2 cores (quiet).
.PHONY: flagship
flagship: $(VENV)/.installed
	$(VENV)/bin/python experiments/flagship.py --workers 2
