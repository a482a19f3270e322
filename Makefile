# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Until the Noise PPO trainer lands, the demo samples the embedded Shapes model on the
# held-out prompts and scores every image with the verifier (grid in runs/demo/grid.png).
demo: install
	rm -rf runs/demo && mkdir -p runs
	$(BIN)/noiseppo sample --prompts shapes-test --n 1 --steps 16 --seed 0 --out runs/demo

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/shapes_verifier.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
