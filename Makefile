# Two set-up commands (see README): `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean e2e-browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fnserve dev examples/showcase

test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# the dashboard in headless Chromium (Debian's chromium, driven by Playwright); the screenshot goes
# to build/artifacts/dashboard.png
e2e-browser: $(STAMP)
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
	FNSERVE_ARTIFACTS=build/artifacts FNSERVE_CHROMIUM="$$(command -v chromium)" \
		$(BIN)/python -m pytest -q -rs tests/server/test_dashboard_browser.py

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
