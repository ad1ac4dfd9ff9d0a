# Two commands do all the set-up on a fresh Debian machine (as root, or with sudo for apt):
#   make demo   - the seed's use case end to end
#   make test   - the whole test suite
PYTHON ?= python3
STAMP := .setup-done

.PHONY: setup demo test lint clean
setup: $(STAMP)
$(STAMP): pyproject.toml .ci/apt-packages.txt .ci/pip-packages.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(PYTHON) scripts/demo.py

test: setup
	bash scripts/test.sh

lint: setup
	ruff check dynawheel tests scripts benchmarks fixtures
	mypy

clean:
	rm -rf $(STAMP) build dist .pytest_cache .mypy_cache demo-out
