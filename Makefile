# Two entry points, each self-installing on a fresh clone (no network beyond the package registries):
#   make repro   the whole pipeline on the embedded tiny profile
#   make test    unit tests + nbval over every notebook, then ruff
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export SAM2_BUILD_CUDA := 0

.PHONY: setup repro test lint notebooks

# The venv is (re)built when pyproject.toml changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)  ## the venv with the pinned packages + every DVC-tracked file (offline: the remote is in the repo)
	dvc pull --quiet

# `dvc pull` restores the photos and the outputs of every stage whose deps and params match dvc.lock
# (all of them on a fresh clone of main); `dvc repro` then re-runs only what changed.
repro: setup  ## dvc repro on the embedded tiny profile
	dvc repro

test: $(STAMP)  ## unit tests + nbval over every notebook (tiny/smoke profile), then ruff
	dvc pull --quiet data.dvc
	python -m pytest
	ruff check .

lint:
	ruff check . && ruff format --check .

notebooks:  ## re-run the source notebooks (smoke profile) to refresh the outputs nbval compares; strip the rest
	SRLAB_PROFILE=smoke SRLAB_BUILD_DIR=$$(mktemp -d) jupyter nbconvert --log-level WARN --execute --to notebook --inplace notebooks/*.ipynb
	python scripts/strip_notebooks.py notebooks/*.ipynb
