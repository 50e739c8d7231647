# The two commands of the README: `make run` and `make test`. Everything the project needs
# is installed here, into .venv, from the package registry: nothing by hand.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck schemas bench bench-volume clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --editable '.[dev,local]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack.stack

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest

# Every figure of the README's performance section, one benchmark after another (they
# share the machine: never run two at once). Results in benchmarks/results/. About an hour.
bench: $(STAMP)
	$(PY) benchmarks/lifecycle.py --processes 1 --rounds 5 --cases 150 --concurrency 5 --concurrency 50 --out benchmarks/results/lifecycle_processes1.json
	$(PY) benchmarks/lifecycle.py --processes 2 --rounds 5 --cases 150 --concurrency 5 --concurrency 50 --out benchmarks/results/lifecycle_processes2.json
	$(PY) benchmarks/cpu_profile.py
	$(PY) benchmarks/audit_replay.py --jobs 1 --out benchmarks/results/audit_replay_jobs1.json
	$(PY) benchmarks/audit_replay.py --jobs 2 --out benchmarks/results/audit_replay_jobs2.json
	$(PY) benchmarks/open_cases.py --cases 1000 --concurrency 50 --out benchmarks/results/open_cases_1000.json
	$(PY) benchmarks/report_queries.py --out benchmarks/results/report_queries.json
	$(PY) benchmarks/notifications.py --out benchmarks/results/notifications.json
	$(PY) benchmarks/notifications.py --notifiers 2 --out benchmarks/results/notifications_notifiers2.json
	$(PY) benchmarks/gateway.py --out benchmarks/results/gateway.json

# The open-case volume: 10,000 cases on the test server with the default cache and with
# every case cached, then 100,000 on the dev server with a wave of 10,000 (about three
# hours more; docs/capacity.md).
bench-volume: $(STAMP)
	$(PY) benchmarks/open_cases.py --cases 10000 --budget 3300 --out benchmarks/results/open_cases_10000.json
	$(PY) benchmarks/open_cases.py --cases 10000 --cache 12000 --budget 3300 --out benchmarks/results/open_cases_10000_cache12000.json
	$(PY) benchmarks/open_cases_dev.py --cases 100000 --wave 10000 --concurrency 100 --out benchmarks/results/open_cases_dev_100000.json

schemas: $(STAMP)
	$(PY) -m devstack.schemas --write

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
