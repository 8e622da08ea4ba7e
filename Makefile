# Everything a fresh machine needs: Python (3.10 to 3.13, as pyenv installs them), make and curl.
# The targets create their virtual environments themselves.
PYTHON ?= $(or $(call interpreter,3.11),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
PORT ?= 8000
# pip 25.1 is the first to read PEP 735 dependency groups (--group).
PIP_MIN := pip>=25.1

# The interpreter of Python $(1) (such as 3.12): pyenv's newest patch release, or python$(1) on PATH.
interpreter = $(shell p="$$(pyenv prefix $(1) 2>/dev/null)"; \
	if [ -n "$$p" ] && [ -x "$$p/bin/python" ]; then echo "$$p/bin/python"; else command -v python$(1); fi)

.PHONY: install system-deps demo test test-pythons test-min test-harness docs lint typecheck pytest \
	bench bench-smoke soak clean

# Debian packages the tests (chromium, for EventSource and the demo in a real browser; redis-server,
# which the broker tests start on free ports themselves; nginx-light and caddy, the reverse proxies
# of the deployment tests) and the benchmarks (nginx-light, the
# file-serving yardstick) need; installed with apt-get only when missing.
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends chromium; }
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends nginx-light; }
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends redis-server; }
	@command -v caddy >/dev/null 2>&1 || \
		{ $(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q --no-install-recommends caddy; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade '$(PIP_MIN)'

# The package (editable) and the "dev" dependency group of pyproject.toml.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

install: $(STAMP)

# The demo in a venv of its own with only what it needs (the package, uvicorn, jinja2).
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade '$(PIP_MIN)'
	$(DEMO_VENV)/bin/python -m pip install --quiet -e . --group demo
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python -m uvicorn demo.app:app --host 127.0.0.1 --port $(PORT) \
		--log-config demo/logging.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

pytest: $(STAMP) system-deps
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The in-process suite on the other Python versions we claim (.venv, where `pytest` runs
# everything, is 3.11), each in a venv of its own with the "test" dependency group.
TEST_PYTHONS := 3.10 3.12 3.13
IN_PROCESS := tests --ignore=tests/e2e --ignore=tests/test_benchmarks.py

.venv-py%/.installed-test: pyproject.toml
	@python="$(call interpreter,$*)"; [ -n "$$python" ] || \
		{ echo "Python $* not found: install it with pyenv (pyenv install $*)" >&2; exit 1; }; \
		"$$python" -m venv .venv-py$*
	.venv-py$*/bin/python -m pip install --quiet --upgrade '$(PIP_MIN)'
	.venv-py$*/bin/python -m pip install --quiet -e . --group test
	touch $@

test-pythons: $(foreach version,$(TEST_PYTHONS),.venv-py$(version)/.installed-test)
	@for version in $(TEST_PYTHONS); do \
		echo "== the in-process suite on Python $$version"; \
		.venv-py$$version/bin/python -m pytest -q -p no:cacheprovider $(IN_PROCESS) || exit 1; \
	done

# The oldest versions we claim, on the oldest Python: the core against starlette 0.40.0 and
# anyio 4.4.0 (.venv-min), and FastAPI's generator endpoints against FastAPI 0.134.0 and the
# starlette it requires (.venv-min-fastapi).
MIN_PYTHON = $(or $(call interpreter,3.10),$(error Python 3.10 not found: install it with pyenv))
MIN_VENV := .venv-min
MIN_PINS := "starlette==0.40.0" "anyio==4.4.0" "fastapi==0.115.4" "httpx==0.27.2" \
	"pytest>=8" "pytest-timeout>=2.3" "jinja2>=3.1" "pydantic>=2.7"
MIN_STAMP := $(MIN_VENV)/.installed-min
MIN_FASTAPI_VENV := .venv-min-fastapi
MIN_FASTAPI_PINS := "fastapi==0.134.0" "starlette==0.46.0" "anyio==4.4.0" "httpx==0.27.2" \
	"pytest>=8" "pytest-timeout>=2.3" "jinja2>=3.1" "pydantic>=2.7" "hypothesis>=6.100" "orjson>=3.9"
MIN_FASTAPI_STAMP := $(MIN_FASTAPI_VENV)/.installed-min

$(MIN_STAMP): Makefile
	$(MIN_PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet $(MIN_PINS)
	touch $(MIN_STAMP)

$(MIN_FASTAPI_STAMP): Makefile
	$(MIN_PYTHON) -m venv $(MIN_FASTAPI_VENV)
	$(MIN_FASTAPI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_FASTAPI_VENV)/bin/python -m pip install --quiet $(MIN_FASTAPI_PINS)
	touch $(MIN_FASTAPI_STAMP)

test-min: $(MIN_STAMP) $(MIN_FASTAPI_STAMP)
	PYTHONPATH=$(CURDIR) $(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test__core.py tests/test__framing.py tests/test_streaming.py tests/test_testing.py \
		tests/test_docs.py::test_the_readme_starlette_example_runs_as_shown
	PYTHONPATH=$(CURDIR) $(MIN_FASTAPI_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_streaming.py tests/test__csv.py tests/test__jsonlines.py tests/test__templates.py \
		tests/test_docs.py -k "fastapi or response_class"

# The e2e suite against Starlette's own classes must fail where a guarantee is missing.
test-harness: $(STAMP) system-deps
	$(BIN)/python -m tests.e2e.prove_failing

test: lint typecheck docs pytest test-pythons test-min test-harness

bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks --smoke

# Not part of `make test`: 1,000 streams of every class on one uvicorn for 10 minutes, clients
# leaving at random points, then a drain; fails on a leak, a miscount or anything logged.
SOAK_ARGS ?= --minutes 10 --streams 1000
soak: $(STAMP)
	$(BIN)/python -m soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(MIN_VENV) $(MIN_FASTAPI_VENV) .venv-py3.* site test-artifacts \
		.pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
