# The two commands of the README: `make run` and `make test`. Everything the project needs
# is installed here, into .venv, from the package registry: nothing by hand.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck schemas clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --editable '.[dev,local]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m caseloop.stack

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest

schemas: $(STAMP)
	$(PY) -m caseloop.schemas --write

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
