# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, then compiles and verifies the bundled example
#   make test   installs everything, then runs the tests
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test test-avx2 bench clean

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,sweep,gpu]"
	command -v yosys >/dev/null && command -v iverilog >/dev/null && command -v qemu-x86_64 >/dev/null || \
		(apt-get update -q && apt-get install -y -q yosys iverilog qemu-user)

# The bundled example: a GRU trained on scikit-learn's digits (examples/train_gru_digits.py).
demo: install
	$(PYTHON) -m gatec inspect examples/gru_digits.pt --input-shape 1,8,8
	$(PYTHON) -m gatec compile examples/gru_digits.pt --input-shape 1,8,8 --target cpu -o build/gru_digits_cpu \
		--data examples/digits_test.npy
	$(PYTHON) -m gatec verify examples/gru_digits.pt --input-shape 1,8,8 --targets cpu --data examples/digits_test.npy \
		--json build/gru_digits_verify.json

# The suite, then its CPU-dependent tests again on an emulated x86 without AVX-512 (qemu-x86_64
# -cpu Haswell; about 10 minutes), so that every machine checks both kinds of host.
test: install
	$(PYTHON) -m pytest -q -ra
	$(PYTHON) -m pytest -q -ra -m avx2

# Only the emulated AVX2-host run.
test-avx2: install
	$(PYTHON) -m pytest -q -ra -m avx2

bench: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf build benchmarks/results .pytest_cache
