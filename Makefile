# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, then compiles and verifies the bundled example
#   make test   installs everything, then runs the tests
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test bench clean

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	command -v yosys >/dev/null && command -v iverilog >/dev/null || (apt-get update -q && apt-get install -y -q yosys iverilog)

# The bundled example: a GRU trained on scikit-learn's digits (examples/train_gru_digits.py).
demo: install
	$(PYTHON) -m gatec inspect examples/gru_digits.pt --input-shape 1,8,8
	$(PYTHON) -m gatec compile examples/gru_digits.pt --input-shape 1,8,8 --target cpu -o build/gru_digits_cpu \
		--data examples/digits_test.npy
	$(PYTHON) -m gatec verify examples/gru_digits.pt --input-shape 1,8,8 --targets cpu --data examples/digits_test.npy \
		--json build/gru_digits_verify.json

test: install
	$(PYTHON) -m pytest -q -ra

bench: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf build benchmarks/results .pytest_cache
