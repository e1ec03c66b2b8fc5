# The one entry point for people and CI. Everything installs from scratch into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test unit integration lint format schema bench evaluate evaluate-fleet seeds clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: with it in place, pip keeps it for the `torch` range
	# in pyproject.toml instead of fetching a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,demo,eval]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: install
	$(BIN)/framedrift demo

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema: install
	$(BIN)/framedrift schema

# The 28×28 model of the shipped Fashion-MNIST sample, which the throughput bench measures.
SAMPLE_MODEL := artifacts/sample-model.pt

$(SAMPLE_MODEL): $(INSTALLED)
	$(BIN)/framedrift train --out $(SAMPLE_MODEL)

bench: install $(SAMPLE_MODEL)
	$(BIN)/python -m bench.throughput --sample-model $(SAMPLE_MODEL)

# Detection quality and the seeds' experiments, on the datasets beside this checkout
# (DATA=... for another copy), with the results where the README points.
DATA ?= ../shared/data

evaluate: install
	$(BIN)/framedrift evaluate --data $(DATA) --no-fleet --out bench/results/evaluation

# The camera fleet alone: 6 cameras x 20,000 frames and 80 fault runs, about 30 minutes
# on 2 cores (plus 3 to train its model the first time). Needs no dataset.
evaluate-fleet: install
	$(BIN)/framedrift evaluate --fleet-only --out bench/results/fleet

seeds: install
	$(BIN)/framedrift seeds --data $(DATA) --out bench/results/seeds.md

clean:
	rm -rf $(VENV) artifacts bench/results framedrift-results build .pytest_cache .ruff_cache *.egg-info
