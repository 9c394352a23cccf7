# Odins Ravne infrastructure. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
SCAN    := .venv-scan
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

LOCAL_STACK     := cdktf.out/stacks/pipeline-local
LOCAL_EMULATOR  ?= moto
# The emulator's endpoint and region come from conf/profiles/local.yaml.
LOCAL_ENV = EMULATOR_ENDPOINT=$$($(PY) -m conf local emulator_endpoint) AWS_DEFAULT_REGION=$$($(PY) -m conf local region)

.PHONY: help setup synth diff deploy validate lint test bench-synth clean images up-localstack down-localstack \
        synth-local deploy-local plan-local run-local status-local destroy-local budget-resume \
        leftovers-local bench-deploy security lint-workflows plan drift apply-plan health integration

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

setup: $(VENV)/.installed $(SCAN)/.installed node_modules/.installed $(BUILD)/terraformrc ## Python venvs, cdktf CLI, Terraform CLI config (idempotent)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(SCAN)/.installed: requirements-scan.txt
	test -x $(SCAN)/bin/python || python3 -m venv $(SCAN)
	$(SCAN)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-scan.txt
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

diff: setup ## cdktf diff of one env's pipeline stack (ENV=<env>; offline-safe --skip-provider-lock)
	SYNTH_ENVS=$(ENV) $(CDKTF) diff pipeline-$(ENV) --skip-provider-lock

deploy: setup ## cdktf deploy of one env's pipeline stack (ENV=<env>; asks before applying)
	SYNTH_ENVS=$(ENV) $(CDKTF) deploy pipeline-$(ENV) --skip-provider-lock

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

security: synth ## checkov on every synthesized stack (+ PLAN_JSON=<plan.json>); skips need a why in tools/checkov_skips.yaml
	$(PY) -m tools.security_scan --strict-skips $(if $(PLAN_JSON),--plan $(PLAN_JSON))

lint-workflows: setup ## .github workflows and actions against GitHub's schemas (check-jsonschema) and zizmor, offline
	$(SCAN)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(SCAN)/bin/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(SCAN)/bin/zizmor --offline --no-progress .github

# ENV=local plans against the emulator (make deploy-local first); cloud envs need AWS credentials.
STACK_DIR  = cdktf.out/stacks/pipeline-$(ENV)
ENV_PREFIX = $(if $(filter local,$(ENV)),$(LOCAL_ENV))
EMU_FLAG   = $(if $(filter local,$(ENV)),--emulator)
LOCK      ?= true

plan: setup ## Plan ENV=<env> + review: build/plan/pipeline-<env>/review.md (exit 2 = BLOCKING; ALLOW_DESTROY=addr,...; LOCK=false for read-only roles)
	SYNTH_ENVS=$(ENV) $(CDKTF) synth --output cdktf.out
	$(ENV_PREFIX) $(PY) -m tools.plan plan $(STACK_DIR) $(EMU_FLAG) $(if $(filter false,$(LOCK)),--no-lock)

drift: setup ## Refresh-only plan of ENV=<env> and a summary of what changed outside Terraform (exit 2 = drift)
	SYNTH_ENVS=$(ENV) $(CDKTF) synth --output cdktf.out
	$(ENV_PREFIX) $(PY) -m tools.plan drift $(STACK_DIR) $(EMU_FLAG) $(if $(filter false,$(LOCK)),--no-lock)

apply-plan: setup ## Apply exactly the reviewed build/plan/pipeline-<env>/plan.tfplan (ENV=<env>)
	$(ENV_PREFIX) $(PY) -m tools.plan apply $(STACK_DIR) $(EMU_FLAG)

health: setup ## ENV=<env>: state machine ACTIVE, queues/compute envs ENABLED+VALID, no alarm in ALARM, last execution
	@test -f $(STACK_DIR)/cdk.tf.json || SYNTH_ENVS=$(ENV) $(CDKTF) synth --output cdktf.out
	$(ENV_PREFIX) $(PY) -m tools.health $(STACK_DIR) $(EMU_FLAG)

integration: setup ## Run the sample manifest through a deployed cloud env (ENV=<env>; AWS credentials)
	$(PY) -m tools.integration

bench-synth: setup ## Cold/warm synth time and peak memory vs the jsii floor
	$(PY) bench/synth.py

images: setup ## Build + push the stage images to ECR (ENV=<env>; needs Docker and a deployed env)
	$(PY) -m tools.images cdktf.out/stacks/pipeline-$(ENV)

up-localstack: setup ## Start the local emulator (moto; LOCAL_EMULATOR=localstack for LocalStack)
	@if [ "$(LOCAL_EMULATOR)" = localstack ]; then $(PY) -m local.localstack start; \
	  else $(LOCAL_ENV) $(PY) -m local.emulator start; fi

down-localstack: ## Stop the local emulator (by PID)
	@if [ "$(LOCAL_EMULATOR)" = localstack ]; then $(PY) -m local.localstack stop; \
	  else $(LOCAL_ENV) $(PY) -m local.emulator stop; fi

synth-local: setup
	SYNTH_ENVS=local $(CDKTF) synth --output cdktf.out

deploy-local: up-localstack synth-local ## Deploy the whole local stack to the emulator (tflocal init + apply)
	$(LOCAL_ENV) $(PY) -m local.deploy apply $(LOCAL_STACK)

plan-local: synth-local ## Plan against the emulator (exit 0 = no changes)
	$(LOCAL_ENV) $(PY) -m local.deploy plan $(LOCAL_STACK)

run-local: setup ## Run the workflow on the sample manifest and follow it state by state
	$(LOCAL_ENV) $(PY) -m local.run

budget-resume: setup ## Undo a budget shutdown (ENV=<env>: queues on, vCPU limits back, kill switch off)
	@if [ "$(ENV)" = local ]; then $(LOCAL_ENV) AWS_ENDPOINT_URL=$$($(PY) -m conf local emulator_endpoint) \
	  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test $(PY) -m tools.budget_resume $(LOCAL_STACK); \
	  else $(PY) -m tools.budget_resume cdktf.out/stacks/pipeline-$(ENV); fi

leftovers-local: setup ## List anything the stack left on the emulator (after destroy-local: nothing)
	$(LOCAL_ENV) $(PY) -m local.leftovers

bench-deploy: setup ## Time a cold deploy-local, a re-plan and a destroy (bench/deploy_local.py)
	$(PY) bench/deploy_local.py

status-local: setup ## Table of what is deployed on the emulator
	$(LOCAL_ENV) $(PY) -m local.status

destroy-local: setup ## Destroy the local stack, then stop the emulator
	@if [ -f $(LOCAL_STACK)/cdk.tf.json ] && $(LOCAL_ENV) $(PY) -m local.emulator status >/dev/null; then \
	  $(LOCAL_ENV) $(PY) -m local.deploy destroy $(LOCAL_STACK); fi
	$(MAKE) --no-print-directory down-localstack
	rm -rf .state/local

clean: ## Remove generated output (keeps .venv, node_modules and local state)
	rm -rf cdktf.out $(BUILD) .pytest_cache .ruff_cache
