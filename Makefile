# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv, installs, and runs the PAY-10 runbook end to end on the SQLite default
#   make test   creates .venv if needed, installs, and runs the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

install: $(VENV)/.installed .env

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Local development settings; production sets real values in its environment instead.
.env:
	printf 'DJANGO_DEBUG=true\n' > .env

demo: install
	$(BIN)/python bin/demo.py

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 demo-output
