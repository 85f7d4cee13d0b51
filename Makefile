# make book   - create .venv, install, run the study on $(PROFILE) and build its HTML book in _site/$(PROFILE)/
#               (again after a kill: the jobs that were running rerun, finished ones are skipped)
# make test   - create .venv, install, run the fast suite (everything but the workflow integration tests),
#               on $(CORES) pytest-xdist workers
# make test-all - the fast suite, then the integration tests (tiny profiles through Snakemake,
#               papermill and the book build): what CI runs
# make publish - copy a finished run of $(PROFILE) into the committed book/ (the only target that does)
# make html   - rebuild the committed study's HTML from the executed notebooks in book/ (runs no code)
# make lint   - ruff lint and format check (pre-commit runs the same: `pip install -e ".[dev]"; pre-commit install`)
PROFILE ?= quick
CORES ?= 2
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: install book publish html test test-integration test-all lint lock clean-results

$(VENV)/.installed: pyproject.toml requirements.lock
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test]"
	touch $@

install: $(VENV)/.installed

# A profile runs in its own working directory, _site/$(PROFILE)/ (tools/book_site.py): its executed
# notebooks, table of contents and HTML never touch tracked files; results stay in results/$(PROFILE)/.
# TARGET: one file of the run instead of the whole book, e.g.
# TARGET=results/quick/metrics/evaluate/geneformer_f0.1_s0.json
SITE = _site/$(PROFILE)
TARGET ?=

book: install
	@$(RUN) python tools/book_site.py prepare --profile $(PROFILE) >/dev/null
	@start=$$(date +%s); $(RUN) snakemake -s workflow/Snakefile --directory $(SITE) --cores $(CORES) \
	  --rerun-incomplete --printshellcmds $(TARGET) --config profile=$(PROFILE); rc=$$?; \
	  echo "make book ($(PROFILE)): $$(( $$(date +%s) - start )) s; the book: $(SITE)/_build/html/index.html"; exit $$rc

# The committed book changes only here: a finished run of $(PROFILE) is copied into book/$(PROFILE)/
# (for the default profile also _toc.yml, book/parameters.md and book/performance.md).
publish: book
	$(RUN) python tools/book_site.py publish --profile $(PROFILE)

# The committed study's HTML. Jupyter Book writes index.html only when it is absent, so it is
# removed first: it must point at this book's first page, not at one built before.
html: install
	rm -f _build/html/index.html
	$(RUN) jupyter-book build . -W -n --keep-going

# Each prints its wall time, so README's figures can be checked on any machine.
test: install
	@start=$$(date +%s); $(RUN) python -m pytest -q -m "not integration" -n $(CORES); rc=$$?; \
	  echo "make test (fast suite): $$(( $$(date +%s) - start )) s"; exit $$rc

test-integration: install
	@start=$$(date +%s); $(RUN) python -m pytest -q -m integration; rc=$$?; \
	  echo "integration tests: $$(( $$(date +%s) - start )) s"; exit $$rc

test-all: test test-integration

# ruff's lint rules and formatter (pyproject.toml); `make test` checks the same (tests/test_lint.py).
lint: install
	$(RUN) ruff check . && $(RUN) ruff format --check .

lock: install
	{ echo "# Every package of the environment, pinned (pip freeze of a working install). Regenerate with"; \
	  echo "# \`make lock\` after changing pyproject.toml."; \
	  $(PY) -m pip freeze | grep -v -iE "^(-e|scfm|# Editable)" | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } > requirements.lock

clean-results:
	rm -rf results/$(PROFILE) $(SITE) _build
