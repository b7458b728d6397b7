# mofkit: the commands a user runs. Each creates the virtual environment (.venv) on first use.
#   make run    the main job: every notebook, in order, headless (PROFILE=cpu by default)
#   make test   the test suite (what CI runs)
#   make test-fast  the fast tier for daily work: every test not marked slow (about a minute)
#   make lab    JupyterLab on the same environment (ARGS go to jupyter lab, e.g. ARGS='--port 8890')
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mofkit-installed
PROFILE ?= cpu
ARGS   ?=

.PHONY: setup run test test-fast lab bench clean-runs

setup: $(STAMP)

# Reinstalled only when pyproject.toml changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[notebooks,dev]"
	@# notebooks are committed without outputs: git strips them on add (.gitattributes names the
	@# filter), keeping the notebooks' own cell ids (--keep-id; nbstripout would renumber them)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		$(BIN)/python -m nbstripout --install && \
		git config filter.nbstripout.clean "'$(abspath $(BIN))/python' -m nbstripout --keep-id" && \
		git config diff.ipynb.textconv "'$(abspath $(BIN))/python' -m nbstripout -t --keep-id"; fi
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m mofkit run --profile $(PROFILE) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

# As root (the usual user in containers) Jupyter refuses to start without --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG) $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py $(ARGS)

clean-runs:
	rm -rf runs reports
