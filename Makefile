# joinedup: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export JOINEDUP_DATA_DIR ?= $(CURDIR)/data
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test lint format clean

install: $(VENV)/.installed

$(UV): tools/uv-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes -r tools/uv-requirements.txt
	touch $@

$(VENV)/.installed: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --group bench --python $(PYTHON)
	touch $@

demo: install
	AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING $(VENV)/bin/joinedup demo

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(JOINEDUP_DATA_DIR) $(AIRFLOW_HOME)
