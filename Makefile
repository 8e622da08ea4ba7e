# Everything a fresh machine needs: Python, make and curl. The targets create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-min test-harness lint typecheck pytest bench bench-smoke clean

# Debian packages the tests (chromium, for EventSource in a real browser) and the benchmarks
# (nginx-light, the file-serving yardstick) need; installed with apt-get only when missing.
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends chromium; }
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends nginx-light; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m uvicorn demo.app:app --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The oldest versions we claim: the in-process suite runs against them in a second venv.
MIN_VENV := .venv-min
MIN_PINS := "starlette==0.40.0" "anyio==4.4.0" "fastapi==0.115.4" "httpx==0.27.2" \
	"pytest>=8" "pytest-timeout>=2.3" "jinja2>=3.1" "pydantic>=2.7"
MIN_STAMP := $(MIN_VENV)/.installed-min

$(MIN_STAMP): Makefile
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet $(MIN_PINS)
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	PYTHONPATH=$(CURDIR) $(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test__core.py tests/test__framing.py tests/test_streaming.py tests/test_testing.py

# The e2e suite against Starlette's own classes must fail where a guarantee is missing.
test-harness: $(STAMP) system-deps
	$(BIN)/python -m tests.e2e.prove_failing

test: lint typecheck pytest test-min test-harness

bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks --smoke

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
