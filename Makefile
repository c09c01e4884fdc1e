# Two commands are all a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-convergence clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/averaged.py

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# averaged SGD, SAG and NT-ASGD against scikit-learn and an exact optimum (~3 min; QUICK=1: ~30 s)
bench-convergence: $(STAMP)
	$(BIN)/python benchmarks/convergence.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
