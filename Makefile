# Two commands set everything up: `make app` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv app test test-e2e lint format bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# On x86_64 these two are served from local disk (a CUDA build that runs on the CPU).
	$(PY) -m pip install -q "torch>=2.2,<=2.14.1" "torchvision>=0.17,<=0.29.1"
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@# Compile umap's numba kernels once (a tiny UMAP): they land in numba's on-disk cache, the
	@# __pycache__ folders beside umap's sources in $(VENV) (or $$NUMBA_CACHE_DIR when set), so the
	@# first UMAP of a new app process costs about what a warm one does.
	$(PY) -c "from dml_core.engine.projection import warm_up; warm_up()"
	touch $(STAMP)

venv: $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run app/main.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# Installs Debian's chromium (never a downloaded browser build), then runs the real-browser test.
test-e2e: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest -m e2e

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
