# make book   - create .venv, install, run the study on $(PROFILE) and build the HTML book
#               (again after a kill: the jobs that were running rerun, finished ones are skipped)
# make test   - create .venv, install, run the fast suite (everything but the workflow integration tests),
#               on $(CORES) pytest-xdist workers
# make test-all - the fast suite, then the integration tests (tiny profiles through Snakemake,
#               papermill and the book build): what CI runs
# make html   - rebuild the HTML from the executed notebooks already in book/ (runs no code)
PROFILE ?= quick
CORES ?= 2
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: install book html test test-integration test-all lock clean-results

$(VENV)/.installed: pyproject.toml requirements.lock
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test]"
	touch $@

install: $(VENV)/.installed

book: install
	$(RUN) snakemake -s workflow/Snakefile --cores $(CORES) --rerun-incomplete --config profile=$(PROFILE) --printshellcmds

html: install
	$(RUN) jupyter-book build . -W -n --keep-going

# Each prints its wall time, so README's figures can be checked on any machine.
test: install
	@start=$$(date +%s); $(RUN) python -m pytest -q -m "not integration" -n $(CORES); rc=$$?; \
	  echo "make test (fast suite): $$(( $$(date +%s) - start )) s"; exit $$rc

test-integration: install
	@start=$$(date +%s); $(RUN) python -m pytest -q -m integration; rc=$$?; \
	  echo "integration tests: $$(( $$(date +%s) - start )) s"; exit $$rc

test-all: test test-integration

lock: install
	{ echo "# Every package of the environment, pinned (pip freeze of a working install). Regenerate with"; \
	  echo "# \`make lock\` after changing pyproject.toml."; \
	  $(PY) -m pip freeze | grep -v -iE "^(-e|scfm|# Editable)" | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } > requirements.lock

clean-results:
	rm -rf results/$(PROFILE) _build
