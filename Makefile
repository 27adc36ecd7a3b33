# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, then compiles and verifies the bundled example
#   make test   installs everything, then runs the tests
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test bench clean

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"

demo: install
	$(PYTHON) examples/gated_demo.py

test: install
	$(PYTHON) -m pytest -q -ra

bench: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf build benchmarks/results .pytest_cache
