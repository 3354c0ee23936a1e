# make demo   run the sample app against the local identity provider
# make test   install everything, then lint, type-check, build the docs (-W) and run the whole test suite
# make test-fast   the inner loop: the tests that need neither chromium nor redis-server
PY := .venv/bin/python

.PHONY: install demo test test-fast lint docs bench bench-api load clean

install:
	bash scripts/bootstrap.sh

demo: install
	$(PY) scripts/demo.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check identity_flask
	$(PY) -m mypy

test: lint docs
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not browser and not redis"

docs: install
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: install
	$(PY) benchmarks/bench.py

bench-api: install
	$(PY) benchmarks/bench_api.py

load: install
	$(PY) benchmarks/load.py

clean:
	rm -rf .venv tests/idp/node_modules docs/_build .pytest_cache .mypy_cache .ruff_cache
