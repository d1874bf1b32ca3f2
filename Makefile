# Two commands do all set-up on a fresh machine:  make lab  |  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Jupyter, IPython and matplotlib keep their config, runtime files and caches inside the repo (ignored).
export JUPYTER_CONFIG_DIR  := $(CURDIR)/.jupyter/config
export JUPYTER_DATA_DIR    := $(CURDIR)/.jupyter/data
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.jupyter/runtime
export IPYTHONDIR          := $(CURDIR)/.jupyter/ipython
export MPLCONFIGDIR        := $(CURDIR)/.cache/matplotlib
export PYTHONDONTWRITEBYTECODE := 1

ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv lab test bench clean

venv: $(STAMP)

# Re-runs only when the pins or the package definition change.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Loopback only, token auth on (Jupyter prints the tokenised URL).
lab: venv
	$(PY) -m jupyter lab notebooks/00_start_here.ipynb --ServerApp.ip=127.0.0.1 \
		--ServerApp.root_dir=$(CURDIR) $(ALLOW_ROOT)

test: venv
	$(PY) -m pytest

bench: venv
	$(PY) tests/bench.py

clean:
	rm -rf $(VENV) .jupyter .cache build *.egg-info
