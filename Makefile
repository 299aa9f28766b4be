# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv, installs, and runs the PAY-10 runbook end to end on the SQLite default
#   make serve  serves that demo database with gunicorn at http://127.0.0.1:$(PORT)/admin/ (Ctrl-C stops)
#   make test   creates .venv if needed, installs, and runs the whole suite (and the browser it needs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
CHROMIUM := /usr/bin/chromium
# Development settings, passed to these targets' own commands only: nothing in the checkout turns
# DEBUG on for a process started any other way (a deploy, a cron job).
DEV := DJANGO_DEBUG=true

.PHONY: demo serve test install chromium clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(DEV) $(BIN)/python bin/demo.py

serve: install
	$(DEV) PORT=$(PORT) $(BIN)/python bin/serve.py

# The browser test drives Debian's Chromium (Playwright never downloads a browser): installed
# through apt when running as root, else one line saying what to install.
chromium:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	  && test -x $(CHROMIUM); } \
	  || { echo "make test needs Debian's chromium at $(CHROMIUM) for the browser test: run 'sudo apt-get install chromium'" >&2; exit 1; }

test: install chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm demo-output staticfiles
