# The README's quick start: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench catalogs clean

$(BIN)/poppoarc: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/poppoarc
	$(BIN)/python -m poppoarc.demo.run

test: $(BIN)/poppoarc
	$(BIN)/python -m pytest

catalogs: $(BIN)/poppoarc   # after editing poppoarc/locale/*/LC_MESSAGES/*.po
	$(BIN)/python -m poppoarc.ui.msgfmt --pot
	$(BIN)/python -m poppoarc.ui.msgfmt

bench: $(BIN)/poppoarc
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
