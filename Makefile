# puhui: the two entry points of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo-output

.PHONY: demo test venv clean samples bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the package (editable, so actuarial/ is read from the checkout) and its deps.
$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m puhui demo --data data-samples/city --out $(DEMO)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# Regenerate the shipped sample city (its README says which command made it).
samples: $(VENV)/.installed
	rm -rf data-samples/city
	$(BIN)/puhui synth --persons 20000 --years 2 --seed 20240101 --out data-samples/city

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_synth.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
