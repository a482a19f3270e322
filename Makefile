# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

# constraints.txt pins this machine's torch (its local CPU build); pyproject.toml keeps a range.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The default preset: Noise PPO on the embedded Shapes model at 4 steps, then a held-out
# before/after table (standard noise against the learned policy, same seeds). The demo trains 80
# of the preset's 160 iterations (its cosine schedule spread over 80), which fits in 15 minutes on
# a 2-core CPU; `noiseppo train` alone runs the whole preset (README, Quick start).
demo: install
	rm -rf runs/demo
	$(BIN)/noiseppo train --out runs/demo iterations=80

test: install
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/shapes_verifier.py
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
