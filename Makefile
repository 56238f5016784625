# puhui: the two entry points of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo-output

.PHONY: demo test venv clean samples bench postgres

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

# The suite runs in TEST_WORKERS processes (pytest-xdist; a test module's tests stay in
# one process, so its module fixtures are built once): the machine of the guide has 2
# cores. `make test TEST_WORKERS=1` runs it in one process. The modules run in the order
# collected, the heaviest first (tests/conftest.py, HEAVY_FIRST), not xdist's default
# (most tests first), so that the two workers end together.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test postgres
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The ledger's PostgreSQL tests start their own server from the one installed here (never
# a shared one; puhui.tempdb): Debian's postgresql package, installed when missing where
# apt-get can (root); elsewhere those tests skip, unless PUHUI_REQUIRE_POSTGRES is set (CI).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing PostgreSQL (Debian's postgresql package) for the ledger tests"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	    else echo "note: no PostgreSQL server and no apt-get as root: the ledger's PostgreSQL tests will skip"; fi; }

# Regenerate the shipped sample city (its README says which command made it).
samples: $(VENV)/.installed
	rm -rf data-samples/city
	$(BIN)/puhui synth --persons 20000 --years 2 --seed 20240101 --out data-samples/city

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_synth.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
