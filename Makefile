# Three entry points; each works on a fresh clone (no network beyond the package registries).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export SAM2_BUILD_CUDA := 0

.PHONY: setup repro test lint notebooks

setup:  ## virtual environment with the pinned packages + the embedded images (dvc pull, offline)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	dvc pull --quiet data.dvc

repro:  ## the whole pipeline on the embedded tiny profile
	dvc repro

test:  ## unit tests + nbval over every notebook (tiny profile)
	python -m pytest
	ruff check .

lint:
	ruff check . && ruff format --check .

notebooks:  ## re-run the source notebooks (tiny profile) to refresh the outputs nbval compares; strip the rest
	SRLAB_PROFILE=smoke SRLAB_BUILD_DIR=$$(mktemp -d) jupyter nbconvert --log-level WARN --execute --to notebook --inplace notebooks/*.ipynb
	python scripts/strip_notebooks.py notebooks/*.ipynb
