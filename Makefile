# callgate — `make test` sets everything up on a fresh machine (venv in .venv, project + test
# extras, chromium for the browser tests) and runs the whole suite, PostgreSQL included.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-asterisk venv lint-imports bench demo clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP)
	@if [ -x .ci/install-chromium ]; then .ci/install-chromium; fi
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# The real-Asterisk suite alone (tests/asterisk): needs an Asterisk 22 ($$ASTERISK_PREFIX/sbin/asterisk,
# else asterisk on PATH) and sipp; here a missing tool or a taken port fails instead of skipping.
# `make test` runs the same tests too, and skips them with one line when a tool is missing.
test-asterisk: $(STAMP)
	CALLGATE_ASTERISK_REQUIRED=1 $(PY) -m pytest -q -rs -m asterisk tests/asterisk

bench: $(STAMP)
	$(PY) -m bench

# The whole product on this machine: ARI simulator, SMTP sink (./var/mail), PayPal stand-in and
# `callgate run` on the embedded SQLite default; CALLGATE_DEMO_FAST=1 for the self-checking quick run.
demo: $(STAMP)
	$(PY) -m callgate.demo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis var
