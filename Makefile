# Two commands do all the set-up on a fresh Debian machine (as root, or with sudo for apt):
#   make demo   - the seed's use case end to end
#   make test   - the whole test suite
PYTHON ?= python3
STAMP := .setup-done

.PHONY: setup demo test lint clean fuzz
setup: $(STAMP)
$(STAMP): pyproject.toml .ci/apt-packages.txt .ci/pip-packages.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(PYTHON) scripts/demo.py

test: setup
	bash scripts/test.sh

# the fuzzer (tests/fuzz/): FUZZ_RUNS cases per input kind, one process; findings in fuzz-findings/
FUZZ_RUNS ?= 100000
FUZZ_KINDS ?= elf pe macho text upload zip check show repair index
fuzz: setup
	@status=0; for kind in $(FUZZ_KINDS); do \
		$(PYTHON) -m tests.fuzz.run $$kind --runs $(FUZZ_RUNS) --findings fuzz-findings | grep '^{' | tail -1 \
		|| status=1; done; \
	if ls fuzz-findings/*.txt >/dev/null 2>&1; then echo "findings in fuzz-findings/"; exit 1; fi; exit $$status

lint: setup
	ruff check dynawheel tests scripts benchmarks fixtures
	mypy

clean:
	rm -rf $(STAMP) build dist .pytest_cache .mypy_cache demo-out fuzz-findings
