# Odins Ravne infrastructure. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
SCAN    := .venv-scan
BUILD   := build
ENV     ?= local
# cdktf synth into cdktf.out/, skipped when its inputs are unchanged (tools/synth.py); FORCE_SYNTH=1 redoes it.
SYNTH    = $(PY) -m tools.synth $(if $(FORCE_SYNTH),--force) $(if $(QUIET),--quiet)

# The machine's environment may preset TF_CLI_CONFIG_FILE to a missing file: override it with ours.
export TF_CLI_CONFIG_FILE := $(abspath $(BUILD)/terraformrc)
export CHECKPOINT_DISABLE := 1
# Terraform and its AWS provider are Go programs: a collection at 5x the live heap instead of 2x cuts
# their CPU by 13-20 % (a plan of the local stack 13.6 -> 11.8 CPU s, `show -json` 5.5 -> 4.4) for
# ~170 MB more peak memory per process (315 -> 490 MB). Yours wins if set.
export GOGC ?= 400
# Versions are pinned in .tool-versions and checked by make setup (tools/toolchain.py), which installs
# the pinned Node LTS into .toolchain/node when PATH's is another major: the jsii kernel and the cdktf
# CLI run on the first `node` on PATH. No jsii Node warning is silenced: the pinned Node is supported.
NODE_BIN := $(abspath .toolchain/node/node_modules/.bin)
export PATH := $(NODE_BIN):$(PATH)
# NODE_COMPILE_CACHE (Node 22) is not set: it made the jsii floor slower here, not faster (the cache of
# the provider's 2,135 modules is ~880 MB; reading it costs more than V8's lazy compile; docs/benchmarks.md).
# Set it yourself to try: make bench-synth then measures with and without it.
export PYTHONDONTWRITEBYTECODE := 1

LOCAL_STACK     := cdktf.out/stacks/pipeline-local
LOCAL_EMULATOR  ?= moto
# What the emulator needs beside it for this pipeline: the stand-in models its Batch stages load.
EMULATOR_SETUP = pipeline_ops.models:ensure_emulator
# The emulator's endpoint and region come from conf/profiles/local.yaml (one `python -m conf` for both).
LOCAL_ENV = env $$($(PY) -m conf local --shell EMULATOR_ENDPOINT=emulator_endpoint AWS_DEFAULT_REGION=region)

.PHONY: help setup test-unit synth diff deploy validate lint test cost docs bench-synth bench-stage bench-post bench-test bench-review soak-local clean images images-check preflight quotas rerun-shards deploy-aws status-aws destroy-aws up-localstack down-localstack \
        synth-local deploy-local plan-local run-local status-local destroy-local budget-resume emergency-stop cost-tags \
        leftovers-local bench-deploy security lint-workflows plan drift apply-plan health integration iam-check weather-key

# make help's groups (tools/make_help.py); a target in none is listed under "other".
HELP_DEFAULTS := ENV=local  IMAGES=100000  TEST_WORKERS=3  LOCAL_EMULATOR=moto  (ENV: local|dev|staging|prod)
HELP_daily  := help setup test-unit test lint synth plan cost docs clean
HELP_local  := up-localstack deploy-local run-local status-local plan-local destroy-local down-localstack leftovers-local soak-local
HELP_cloud  := deploy diff deploy-aws apply-plan health status-aws drift images images-check preflight quotas integration rerun-shards weather-key budget-resume emergency-stop cost-tags destroy-aws
HELP_checks := validate security iam-check lint-workflows
HELP_bench  := bench-synth bench-stage bench-post bench-test bench-review bench-deploy

help: ## This list: targets by group, one line each (defaults first)
	@python3 -m tools.make_help $(firstword $(MAKEFILE_LIST))

setup: .toolchain/.checked $(VENV)/.installed $(SCAN)/.installed node_modules/.installed $(BUILD)/terraformrc ## Toolchain check (+ Node LTS), Python venvs, cdktf CLI, Terraform CLI config (idempotent)
	$(if $(filter setup,$(MAKECMDGOALS)),@python3 -m tools.toolchain --print)

.toolchain/.checked: .tool-versions tools/toolchain.py
	@python3 -m tools.toolchain
	@touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(SCAN)/.installed: requirements-scan.txt
	test -x $(SCAN)/bin/python || python3 -m venv $(SCAN)
	$(SCAN)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-scan.txt
	touch $@

node_modules/.installed: package.json package-lock.json | .toolchain/.checked
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BUILD)/terraformrc: tools/tf_cli_config.py FORCE
	@mkdir -p $(BUILD)
	@python3 -m tools.tf_cli_config $@

FORCE:

synth: setup ## Synthesize every environment (SYNTH_ENVS=local,dev for some) into cdktf.out/; no-op when no input changed
	@$(SYNTH)

# Terraform with progress and a log in build/logs/, never a raw `cdktf deploy|diff` (its UI needs a
# terminal). A cloud env deploys only through deploy-aws's checks.
diff: $(if $(filter local,$(ENV)),plan-local,plan) ## ENV's changes: ENV=local is make plan-local, a cloud ENV make plan (+ review)

deploy: $(if $(filter local,$(ENV)),deploy-local,deploy-aws) ## ENV=local is make deploy-local; a cloud ENV is make deploy-aws

validate: synth ## terraform init (offline, from the mirror) + validate every synthesized stack
	$(PY) -m tools.tf_validate

lint: setup ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Test workers: each module of stack tests is one group on one worker with its own emulator and stack
# (tests/conftest.py; the critical path: deploy, runs, destroy), the rest spread.
TEST_WORKERS ?= 3
# The suite's own synth (not cdktf.out, which `make plan ENV=...` re-synthesizes for one env).
TEST_SYNTH    = $(BUILD)/test-synth

test: setup ## Lint, synth once (shared by every worker), then the whole suite on TEST_WORKERS pytest-xdist workers
	$(MAKE) --no-print-directory lint
	@env -u SYNTH_ENVS $(SYNTH) --output $(TEST_SYNTH)
	@ODINS_TEST_SYNTH=$(abspath $(TEST_SYNTH)) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - that is a failure here" >&2; fi; \
	  exit $$rc

# No emulator, no Terraform CLI, no make target, no checkov (pytest markers in pyproject.toml).
test-unit: setup ## The tests that need no emulator and no Terraform (-m "not emulator and not terraform"), on 2 workers
	@$(PY) -m pytest -n 2 -m "not emulator and not terraform" -q $(PYTEST_ARGS)

bench-test: setup ## Wall time of `make test`, its ten slowest tests and the busy core-seconds (bench/test_suite.py)
	$(PY) bench/test_suite.py

security: synth ## checkov on every synthesized stack (+ PLAN_JSON=<plan.json>); skips need a why in tools/checkov_skips.yaml
	$(PY) -m tools.security_scan --strict-skips $(if $(PLAN_JSON),--plan $(PLAN_JSON))

lint-workflows: setup ## .github workflows and actions against GitHub's schemas (check-jsonschema) and zizmor, offline
	$(SCAN)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(SCAN)/bin/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(SCAN)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(SCAN)/bin/zizmor --offline --no-progress .github

# ENV=local plans against the emulator (make deploy-local first); cloud envs need AWS credentials.
STACKS_OUT = cdktf.out/stacks
STACK_DIR  = $(STACKS_OUT)/pipeline-$(ENV)
PLAN_DIR   = $(BUILD)/plan/pipeline-$(ENV)
comma     := ,
space     := $(subst ,, )
# boto3 tools aimed at the emulator for ENV=local (its endpoint and dummy credentials).
ENV_AWS    = $(if $(filter local,$(ENV)),AWS_ENDPOINT_URL=$$($(PY) -m conf local emulator_endpoint) AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test)
ENV_PREFIX = $(if $(filter local,$(ENV)),$(LOCAL_ENV))
# One line and exit 2, before any work, for a bad ENV, or (REACHABLE) no AWS credentials / no emulator.
CHECK_ENV  = @$(PY) -m tools.cli check-env $(ENV)
REACHABLE  = @$(ENV_PREFIX) $(PY) -m tools.cli check-env $(ENV) --reachable
EMULATOR_UP = @$(LOCAL_ENV) $(PY) -m tools.cli check-env local --reachable
EMU_FLAG   = $(if $(filter local,$(ENV)),--emulator)
LOCK      ?= true

plan: setup ## Plan ENV=<env> + review: build/plan/pipeline-<env>/review.md (exit 2 = BLOCKING; approve destroys in plan-approvals.yaml; FAIL_ON=review fails on REVIEW too; LOCK=false for read-only roles; REFRESH=false trusts the state)
	$(REACHABLE)
	SYNTH_ENVS=$(ENV) $(SYNTH)
	@$(ENV_PREFIX) $(PY) -m tools.plan plan $(STACK_DIR) $(EMU_FLAG) $(if $(filter false,$(LOCK)),--no-lock) $(if $(filter false,$(REFRESH)),--no-refresh) $(if $(FAIL_ON),--fail-on $(FAIL_ON)); status=$$?; \
	  if [ $$status -ne 1 ]; then $(PY) -m pipeline_ops.cost build/plan/pipeline-$(ENV)/plan.json \
	    $(if $(IMAGES),--images $(IMAGES)) --append build/plan/pipeline-$(ENV)/review.md || exit 1; fi; exit $$status

docs: setup ## Diagrams of ENV (default prod) into docs/diagrams/ and the README's generated figures and tables, from the synthesized configs (needs Graphviz: apt-get install graphviz)
	@env -u SYNTH_ENVS $(SYNTH)
	@$(PY) -m pipeline_ops.diagrams $(STACKS_OUT)/pipeline-$(or $(filter-out local,$(ENV)),prod)/cdk.tf.json --out docs/diagrams --render
	@$(PY) -m pipeline_ops.readme $(STACKS_OUT)

cost: setup ## USD per 1,000 images and a manifest's cost + wall time (IMAGES=N, default 100000) from ENV=<env>'s synthesized config, offline
	$(CHECK_ENV)
	@SYNTH_ENVS=$(ENV) $(SYNTH)
	@$(PY) -m pipeline_ops.cost $(STACK_DIR)/cdk.tf.json $(if $(IMAGES),--images $(IMAGES))

drift: setup ## Refresh-only plan of ENV=<env> and a summary of what changed outside Terraform (exit 2 = drift)
	$(REACHABLE)
	SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(PY) -m tools.plan drift $(STACK_DIR) $(EMU_FLAG) $(if $(filter false,$(LOCK)),--no-lock)

apply-plan: setup ## Apply exactly the reviewed build/plan/pipeline-<env>/plan.tfplan (ENV=<env>); refused when its review.json is missing or BLOCKING, or while the kill switch is on
	$(REACHABLE)
	@$(PY) -m tools.plan apply $(STACK_DIR) --out $(PLAN_DIR) --check-only
	$(ENV_PREFIX) $(PY) -m pipeline_ops.kill_switch check $(STACK_DIR)
	$(ENV_PREFIX) $(PY) -m tools.plan apply $(STACK_DIR) --out $(PLAN_DIR) $(EMU_FLAG)

health: setup ## ENV=<env>: state machine ACTIVE, queues/compute envs ENABLED+VALID, no alarm in ALARM, last execution
	$(REACHABLE)
	@test -f $(STACK_DIR)/cdk.tf.json || SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(PY) -m pipeline_ops.health $(STACK_DIR) $(EMU_FLAG)

# $(1): what to do instead.
CLOUD_ONLY = @if [ "$(ENV)" = local ]; then echo "error: ENV=local runs on the emulator: $(1)" >&2; exit 2; fi

deploy-aws: setup ## ENV=<cloud env>: preflight -> quotas -> plan + review (BLOCKING stops) -> push images -> apply that plan -> image check -> health
	$(CHECK_ENV)
	$(call CLOUD_ONLY,use make deploy-local)
	@$(MAKE) --no-print-directory preflight ENV=$(ENV) QUIET=1
	$(REACHABLE)
	$(PY) -m pipeline_ops.kill_switch check $(STACK_DIR)
	@$(MAKE) --no-print-directory quotas ENV=$(ENV) QUIET=1
	$(MAKE) --no-print-directory plan ENV=$(ENV)
	$(MAKE) --no-print-directory images ENV=$(ENV)
	$(MAKE) --no-print-directory apply-plan ENV=$(ENV)
	$(MAKE) --no-print-directory images ENV=$(ENV)
	$(MAKE) --no-print-directory images-check ENV=$(ENV)
	$(MAKE) --no-print-directory health ENV=$(ENV)

quotas: setup ## ENV=<cloud env>: the account's Service Quotas hold what the stack needs (Lambda concurrency, Spot/On-Demand vCPUs, Batch counts); one line per shortfall, exit 2
	$(CHECK_ENV)
	$(call CLOUD_ONLY,the emulator has no Service Quotas; check a cloud env: make quotas ENV=dev|staging|prod)
	$(REACHABLE)
	@SYNTH_ENVS=$(ENV) $(SYNTH)
	@$(PY) -m tools.quotas $(STACK_DIR) $(QUOTA_ARGS)

status-aws: setup ## ENV=<cloud env>: health checks + recent executions, budget spent vs limit, kill switch
	$(CHECK_ENV)
	$(call CLOUD_ONLY,use make status-local)
	$(REACHABLE)
	@test -f $(STACK_DIR)/cdk.tf.json || SYNTH_ENVS=$(ENV) $(SYNTH)
	$(PY) -m pipeline_ops.health $(STACK_DIR) --status

destroy-aws: setup ## ENV=<cloud env> CONFIRM=<env>: terraform destroy; refuses any stack with prevent_destroy (prod)
	$(CHECK_ENV)
	$(call CLOUD_ONLY,use make destroy-local)
	@test -f $(STACK_DIR)/cdk.tf.json || SYNTH_ENVS=$(ENV) $(SYNTH)
	@$(PY) -m tools.plan destroy $(STACK_DIR) --confirm '$(CONFIRM)' --check-only
	$(REACHABLE)
	$(PY) -m tools.plan destroy $(STACK_DIR) --confirm '$(CONFIRM)'

integration: setup ## Run the sample manifest through a deployed cloud env (ENV=<env>; AWS credentials)
	$(REACHABLE)
	$(PY) -m pipeline_ops.integration

bench-review: setup ## Review time of a generated plan of 5,000 changes (target < 2 CPU s; bench/review.py)
	$(PY) bench/review.py

bench-synth: setup ## Cold/warm synth time and peak memory vs the jsii floor
	$(PY) bench/synth.py

bench-stage: setup ## GPU stages on IMAGES=N (default 64) camera-trap JPEGs (CPU provider): end to end vs model-only images/s, peak RSS (target ratio <= 1.25)
	$(PY) bench/stage.py --images $(or $(IMAGES),64)

bench-post: setup ## WeatherEnrichment + WriteParquet on IMAGES=275000 SITES=500 DAYS=120 (loopback weather 150 ms, 5 % 429s): time and memory vs the functions' settings (target worst <= 0.5)
	$(PY) bench/post.py --images $(or $(IMAGES),275000) --sites $(or $(SITES),500) --days $(or $(DAYS),120)

images: setup ## Build + push the stage images ECR lacks (ENV=<env>; needs Docker; tags from the profile, immutable)
	$(CHECK_ENV)
	@$(PY) -m pipeline_ops.images $(STACK_DIR) --require-docker
	$(REACHABLE)
	@SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.images $(STACK_DIR)

images-check: setup ## Fail with one line when a stage image tag the env's job definitions run is missing from ECR
	$(REACHABLE)
	@SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.images --check $(STACK_DIR)

# Every env unless ENV is given: make preflight / make preflight ENV=prod.
ALL_ENVS       = $(sort $(basename $(notdir $(filter-out %/defaults.yaml,$(wildcard conf/profiles/*.yaml)))))
PREFLIGHT_ENVS = $(if $(filter command line environment,$(origin ENV)),$(ENV),$(ALL_ENVS))
# One env (CI before its plan, make deploy-aws): example account ids and alert addresses stop it.
# Every env (make test, checks.yml): they are notes, the repository's profiles are examples.
PLACEHOLDERS   = $(if $(filter command line environment,$(origin ENV)),--refuse-placeholders \
  --placeholder-hint "set account_id and budget.subscribers in conf/profiles/$(ENV).yaml to the env's real account and the team's addresses")

# The state-bootstrap stack of each cloud env's account (permissions boundary, CI roles, OIDC provider,
# state bucket policy) is preflighted with the env's pipeline stack.
BOOTSTRAP_STACKS = $$(for e in $(PREFLIGHT_ENVS); do $(PY) -m conf $$e account_id; done \
  | grep -v '^null$$' | sort -u | sed 's|^|$(STACKS_OUT)/state-bootstrap-|')

preflight: setup ## Prove on the synthesized config (pipeline and state-bootstrap stacks) what the emulator cannot see: reachability, cost tags, alert delivery, placement, images, the AWS rules of docs/aws-contract.md
	@$(foreach e,$(PREFLIGHT_ENVS),$(PY) -m tools.cli check-env $(e) &&) true
	@SYNTH_ENVS=$(subst $(space),$(comma),$(strip $(PREFLIGHT_ENVS))) $(SYNTH)
	@$(PY) -m tools.preflight $(PLACEHOLDERS) $(foreach e,$(PREFLIGHT_ENVS),$(STACKS_OUT)/pipeline-$(e)) $(BOOTSTRAP_STACKS)

IAM_ENVS = $(if $(filter command line environment,$(origin ENV)),$(ENV),$(ALL_ENVS))

iam-check: setup ## Every AWS call of lambda_src/, images/ and each workflow state (and AWS's for them) against the synthesized IAM: DENIED lines fail, UNUSED lines list grants to tighten (EVERY=1 lists each call)
	@$(foreach e,$(IAM_ENVS),$(PY) -m tools.cli check-env $(e) &&) true
	@SYNTH_ENVS=$(subst $(space),$(comma),$(strip $(IAM_ENVS))) $(SYNTH)
	$(PY) -m pipeline_ops.iam_calls $(STACKS_OUT) $(IAM_ENVS) $(if $(EVERY),--every)

up-localstack: setup ## Start the local emulator (moto; LOCAL_EMULATOR=localstack for LocalStack)
	@if [ "$(LOCAL_EMULATOR)" = localstack ]; then $(PY) -m local.localstack start; \
	  else $(LOCAL_ENV) $(PY) -m local.emulator start --setup $(EMULATOR_SETUP); fi

down-localstack: ## Stop the local emulator (by PID)
	@if [ "$(LOCAL_EMULATOR)" = localstack ]; then $(PY) -m local.localstack stop; \
	  else $(LOCAL_ENV) $(PY) -m local.emulator stop; fi

synth-local: setup
	SYNTH_ENVS=local $(SYNTH)

deploy-local: up-localstack synth-local ## Deploy the whole local stack to the emulator (tflocal init + apply) + a dummy weather key
	$(LOCAL_ENV) $(ENV_AWS) $(PY) -m pipeline_ops.kill_switch check $(LOCAL_STACK)
	$(LOCAL_ENV) $(PY) -m local.deploy apply $(LOCAL_STACK)
	$(LOCAL_ENV) $(ENV_AWS) $(PY) -m pipeline_ops.weather_key local --dummy

plan-local: setup ## Plan against the emulator (exit 0 = no changes)
	$(EMULATOR_UP)
	@SYNTH_ENVS=local $(SYNTH)
	$(LOCAL_ENV) $(PY) -m local.deploy plan $(LOCAL_STACK)

run-local: setup ## Upload the sample (IMAGES=N: N generated images) and follow the run its upload starts; PRIORITY/IMAGES_PER_SHARD or RERUN=s3://... start one by hand
	$(EMULATOR_UP)
	$(LOCAL_ENV) $(PY) -m pipeline_ops.run $(if $(IMAGES),--images $(IMAGES)) $(if $(PRIORITY),--priority $(PRIORITY)) \
	  $(if $(IMAGES_PER_SHARD),--images-per-shard $(IMAGES_PER_SHARD)) $(if $(RERUN),--rerun '$(RERUN)')

rerun-shards: setup ## ENV=<env> EXECUTION=<name>: a manifest of just the shards that execution lost (its notice names them); START=1 starts it here
	@test -n "$(EXECUTION)" || { echo "error: EXECUTION is not set; give the execution's name from its notice: make rerun-shards ENV=$(ENV) EXECUTION=<name>" >&2; exit 2; }
	$(REACHABLE)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.rerun_shards $(if $(filter local,$(ENV)),$(LOCAL_STACK),$(STACK_DIR)) $(EXECUTION) $(if $(START),--start)

weather-key: setup ## Set/rotate ENV=<env>'s weather API key (SecureString, pipeline key; the value on stdin or a prompt, never argv)
	$(CHECK_ENV)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.weather_key $(ENV)

budget-resume: setup ## Undo a budget shutdown (ENV=<env>: queues on, vCPU limits back, kill switch off)
	$(REACHABLE)
	@test -f $(if $(filter local,$(ENV)),$(LOCAL_STACK),$(STACK_DIR))/cdk.tf.json || SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.budget_resume $(if $(filter local,$(ENV)),$(LOCAL_STACK),$(STACK_DIR))

emergency-stop: setup ## ENV=<env> CONFIRM=<env> [REASON=...]: the budget shutdown by hand (kill switch on, queues off, 0 vCPUs, executions stopped, jobs terminated)
	$(REACHABLE)
	@test -f $(if $(filter local,$(ENV)),$(LOCAL_STACK),$(STACK_DIR))/cdk.tf.json || SYNTH_ENVS=$(ENV) $(SYNTH)
	$(ENV_PREFIX) $(ENV_AWS) $(PY) -m pipeline_ops.kill_switch stop $(if $(filter local,$(ENV)),$(LOCAL_STACK),$(STACK_DIR)) \
	  --confirm '$(CONFIRM)'

cost-tags: setup ## ENV=<cloud env>: activate the cost allocation tags (CostScope, Stage) once they exist; safe to repeat
	$(CHECK_ENV)
	@if [ "$(ENV)" = local ]; then echo "error: local has no Cost Explorer: cost allocation tags live in a cloud account (make cost-tags ENV=dev)" >&2; exit 2; fi
	$(REACHABLE)
	$(PY) -m pipeline_ops.cost_tags $(ENV)

leftovers-local: setup ## List anything the stack left on the emulator (after destroy-local: nothing)
	$(EMULATOR_UP)
	$(LOCAL_ENV) $(PY) -m local.leftovers

N         ?= 10
EMULATORS ?= both
BURN      ?= 0
soak-local: setup synth-local ## Deploy, run the sample, re-plan, destroy N times (N=10 EMULATORS=both|shared|fresh BURN=<busy procs> SOAK_TF_LOG=1)
	$(PY) -m local.soak --sample pipeline_ops.run:sample --emulator-setup $(EMULATOR_SETUP) --cycles $(N) --emulators $(EMULATORS) --burn $(BURN) $(if $(SOAK_TF_LOG),--tf-log)

bench-deploy: setup ## Time a cold deploy-local, a re-plan and a destroy (bench/deploy_local.py)
	$(PY) bench/deploy_local.py

status-local: setup ## Table of what is deployed on the emulator
	$(EMULATOR_UP)
	$(LOCAL_ENV) $(PY) -m local.status

destroy-local: setup ## Destroy the local stack, then stop the emulator
	@if [ -f $(LOCAL_STACK)/cdk.tf.json ] && $(LOCAL_ENV) $(PY) -m local.emulator status >/dev/null; then \
	  $(LOCAL_ENV) $(PY) -m local.deploy destroy $(LOCAL_STACK); fi
	$(MAKE) --no-print-directory down-localstack
	rm -rf .state/local

clean: ## Remove generated output (keeps .venv, node_modules and local state)
	rm -rf cdktf.out $(BUILD) .pytest_cache .ruff_cache
