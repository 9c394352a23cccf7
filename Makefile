# Odins Ravne infrastructure. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
BUILD   := build
ENV     ?= local
CDKTF   := node_modules/.bin/cdktf

# The machine's environment may preset TF_CLI_CONFIG_FILE to a missing file: override it with ours.
export TF_CLI_CONFIG_FILE := $(abspath $(BUILD)/terraformrc)
export CHECKPOINT_DISABLE := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup synth validate lint test bench-synth clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

setup: $(VENV)/.installed node_modules/.installed $(BUILD)/terraformrc ## Python venv, cdktf CLI, Terraform CLI config (idempotent)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BUILD)/terraformrc: tools/tf_cli_config.py FORCE
	@mkdir -p $(BUILD)
	@python3 -m tools.tf_cli_config $@

FORCE:

synth: setup ## Synthesize every environment (SYNTH_ENVS=local,dev for some) into cdktf.out/
	$(CDKTF) synth --output cdktf.out

validate: synth ## terraform init (offline, from the mirror) + validate every synthesized stack
	$(PY) -m tools.tf_validate

lint: setup ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup ## Lint, then the whole test suite (one synthesized app per session)
	$(MAKE) --no-print-directory lint
	@$(PY) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - that is a failure here" >&2; fi; \
	  exit $$rc

bench-synth: setup ## Cold/warm synth time and peak memory vs the jsii floor
	$(PY) bench/synth.py

clean: ## Remove generated output (keeps .venv, node_modules and local state)
	rm -rf cdktf.out $(BUILD) .pytest_cache .ruff_cache
