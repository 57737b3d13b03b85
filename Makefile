# Two set-up commands (see README): `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench fuzz clean conformance e2e-container e2e-browser tutorial

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
	$(BIN)/ruff check src tests bench docs/tutorial.py
	$(BIN)/mypy

# The conformance fixtures (conformance/projects/) under `fnserve dev` and `fnserve start`; cases
# waiting for a fix are listed in conformance/pending.toml. Against the platforms' own runtimes:
# $(BIN)/python conformance/run.py --runtime vercel|edgeone (manual: npm tools, Python 3.10/3.12).
conformance: $(STAMP)
	$(BIN)/ruff check conformance/run.py
	$(BIN)/python conformance/run.py --runtime fnserve --dev --start

# the container target's image built and run with podman (root, apt, a Debian mirror; not in `make test`)
e2e-container: $(STAMP)
	$(BIN)/python tests/e2e/container.py

# The front-door fuzz test with fresh random inputs and many more examples than `make test` runs
# (FUZZ_EXAMPLES per test and server; prints the input kinds tried and their outcomes).
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	FNSERVE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FNSERVE_FUZZ_RANDOM=1 FNSERVE_FUZZ_REPORT=1 \
		$(BIN)/python -m pytest -q -s -p no:cacheprovider --timeout=3600 tests/fuzz

# the dashboard in headless Chromium (Debian's chromium, driven by Playwright); the screenshot goes
# to build/artifacts/dashboard.png
e2e-browser: $(STAMP)
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }
	FNSERVE_ARTIFACTS=build/artifacts FNSERVE_CHROMIUM="$$(command -v chromium)" \
		$(BIN)/python -m pytest -q -rs tests/server/test_dashboard_browser.py

# docs/TUTORIAL.md rewritten by running a first session (init, dev, edit, error, fix, build, start)
tutorial: $(STAMP)
	$(BIN)/python docs/tutorial.py

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
