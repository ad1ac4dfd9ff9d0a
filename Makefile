# Two commands do all the set-up on a fresh Debian machine (as root, or with sudo for apt):
#   make demo   - the seed's use case end to end
#   make test   - the whole test suite
# Python packages go into the project's own virtual environment, .venv/, never into the python3 on PATH
# (that interpreter only creates .venv). Use what it installed: .venv/bin/dynawheel, or `. .venv/bin/activate`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test lint clean distclean fuzz
setup: $(STAMP)
$(STAMP): pyproject.toml .ci/apt-packages.txt .ci/pip-packages.txt scripts/setup.sh
	BASE_PYTHON=$(PYTHON) bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/python scripts/demo.py

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON="$(CURDIR)/$(VENV)/bin/python" bash scripts/test.sh

# the fuzzer (tests/fuzz/): FUZZ_RUNS cases per input kind, one process; findings in fuzz-findings/
FUZZ_RUNS ?= 100000
FUZZ_KINDS ?= elf pe macho text upload zip check show repair index cli
fuzz: setup
	@status=0; for kind in $(FUZZ_KINDS); do \
		$(VENV)/bin/python -m tests.fuzz.run $$kind --runs $(FUZZ_RUNS) --findings fuzz-findings | grep '^{' | tail -1 \
		|| status=1; done; \
	if ls fuzz-findings/*.txt >/dev/null 2>&1; then echo "findings in fuzz-findings/"; exit 1; fi; exit $$status

lint: setup
	$(VENV)/bin/python -m ruff check dynawheel tests scripts benchmarks fixtures
	$(VENV)/bin/python -m mypy

clean:
	rm -rf .setup-done build dist .pytest_cache .mypy_cache demo-out fuzz-findings

distclean: clean
	rm -rf $(VENV)
