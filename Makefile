PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pycanon (independent k/l/t checker for the tests) pins pandas 2.x: it lives in its own venv.
PYCANON := .venv-pycanon/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(PYCANON):
	test -d .venv-pycanon || $(PY) -m venv .venv-pycanon
	.venv-pycanon/bin/pip install --quiet pycanon
	touch $(PYCANON)

lint: install
	$(BIN)/ruff check anonymization policies service alembic tests benchmarks
	$(BIN)/ruff format --check anonymization policies service alembic tests benchmarks
	$(BIN)/mypy anonymization policies service

test: lint $(PYCANON)
	$(BIN)/pytest -n 2 -q

# Serve the API on 127.0.0.1:8000 with an embedded SQLite database under var/.
# The admin client's credentials are kept in var/admin-client.json and reused on later runs.
run: install
	$(BIN)/partage db upgrade
	$(BIN)/partage admin create-client admin --save var/admin-client.json
	$(BIN)/partage demo load
	$(BIN)/partage serve

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-pycanon var .pytest_cache .mypy_cache .ruff_cache
