# deepm3 — `make help` lists the targets. Everything runs inside .venv (created on first use).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deepm3-installed
# CPU machines take the torch wheel that lies on disk; GPU users: make install TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.13.0

.DEFAULT_GOAL := help
.PHONY: help install train test test-full lint format bench clean phase2 amazon

help: ## show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev,serve]"
	$(PY) -m pip install --no-deps recbole==1.2.1
	touch $(STAMP)

install: $(STAMP) ## create .venv and install deepm3 (+ the offline ML-100k copy)

train: $(STAMP) ## train + test DeepM3 on ML-100k (pass Hydra overrides with ARGS="solver=rk4 seed=2")
	$(PY) -m deepm3.train $(ARGS)

test: $(STAMP) ## run the fast test suite (not slow)
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff: lint and format check (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff: fix import order and reformat the tree
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-full: $(STAMP) ## run every test, slow ones included
	$(PY) -m pytest $(ARGS)

clean: ## remove run outputs and caches (not the venv, not the data cache)
	rm -rf outputs multirun .pytest_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

bench: $(STAMP) ## speed/memory table of every model (ML-1M and ML-100k shapes) -> outputs/bench/
	$(PY) -m deepm3.bench $(ARGS)

# The experiment suite (python -m deepm3.phase2): DATASET / PRESET (smoke|full) / SEEDS ("[0,1,2]") / DEVICE
DATASET ?= ml1m
PRESET ?= full
SEEDS ?=
DEVICE ?= auto

phase2: $(STAMP) ## whole study -> results/$(DATASET)/, PRESET=smoke -> outputs/phase2/smoke/ (DATASET=ml1m PRESET=full|smoke SEEDS="[0,1]" DEVICE=auto|cpu|cuda ARGS=...)
	$(PY) -m deepm3.phase2 dataset=$(DATASET) preset=$(PRESET) device=$(DEVICE) $(if $(SEEDS),'seeds=$(SEEDS)') $(ARGS)

amazon: ## the phase2 study on Amazon Books (same PRESET/SEEDS/DEVICE variables)
	$(MAKE) phase2 DATASET=amazon_books
