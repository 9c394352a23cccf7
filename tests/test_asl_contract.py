"""The ASL contract (tools/asl_contract.py, preflight check ``workflow``) on the synthesized stacks.

Each red test breaks one thing in a synthesized state machine that moto runs anyway and real Step
Functions does not (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html):
a retrier that never fires, a selected key the answer lacks, an answer that grows with the data, a
Fail state nobody hears of. Among them, the defects the workflow had until this check existed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.conftest import SynthResult
from tools import asl_contract, preflight

BATCH_TRANSIENT = ["Batch.AWSBatchException", "Batch.ServerException", "Batch.TooManyRequestsException"]


def machine(config: dict) -> dict:
    (name,) = config["resource"]["aws_sfn_state_machine"]
    return config["resource"]["aws_sfn_state_machine"][name]


def edited(synth: SynthResult, env: str, change) -> dict:
    """The env's stack with ``change(definition, config)`` applied to its state machine."""
    config = copy.deepcopy(synth.pipeline(env))
    document = json.loads(machine(config)["definition"])
    change(document, config)
    machine(config)["definition"] = json.dumps(document)
    return config


def found(config: dict, tmp_path: Path) -> list[str]:
    folder = tmp_path / "stack"
    folder.mkdir(exist_ok=True)
    (folder / "cdk.tf.json").write_text(json.dumps(config))
    return [f.problem for f in preflight.check_workflow(preflight.Stack(folder))]


def function_of(config: dict, fragment: str) -> dict:
    functions = config["resource"]["aws_lambda_function"]
    return functions[next(n for n in functions if fragment in n)]


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_every_environment_keeps_the_contract(synth: SynthResult, env: str, tmp_path: Path) -> None:
    assert found(synth.pipeline(env), tmp_path) == []
    document = json.loads(machine(synth.pipeline(env))["definition"])
    # The workflow's own retriers: Batch API errors before the catch-all retry of a failed job.
    assert [r["ErrorEquals"] for r in document["States"]["Stage0"]["Retry"]] == [BATCH_TRANSIENT, ["States.TaskFailed"]]
    children = document["States"]["Stage1ToStage2"]["ItemProcessor"]["States"]
    assert all(
        [r["ErrorEquals"] for r in s["Retry"]] == [BATCH_TRANSIENT, ["States.TaskFailed"]] for s in children.values()
    )
    assert [r["ErrorEquals"] for r in document["States"]["Stage1ToStage2"]["Retry"]] == [["States.ItemReaderFailed"]]


def test_a_reordered_retrier_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """Yesterday's Stage0: States.TaskFailed first shadows the Batch retrier after it."""

    def reorder(document: dict, _: dict) -> None:
        document["States"]["Stage0"]["Retry"].reverse()

    problems = found(edited(synth, "dev", reorder), tmp_path)
    assert problems == [
        "retry-order: Stage0: Retrier 2 "
        "['Batch.AWSBatchException', 'Batch.ServerException', 'Batch.TooManyRequestsException'] never applies: "
        "an earlier retrier (States.TaskFailed) takes it first; put the specific one first"
    ]


def test_a_reordered_retrier_in_a_map_child_is_found(synth: SynthResult, tmp_path: Path) -> None:
    def reorder(document: dict, _: dict) -> None:
        document["States"]["Stage1ToStage2"]["ItemProcessor"]["States"]["Stage2"]["Retry"].reverse()

    assert [p.split(":")[1].strip() for p in found(edited(synth, "dev", reorder), tmp_path)] == [
        "Stage1ToStage2/Stage2"
    ]


def test_a_batch_retrier_on_the_map_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """Yesterday's Distributed Map retried Batch.* errors, which a Map never raises."""

    def batch_retrier(document: dict, _: dict) -> None:
        document["States"]["Stage1ToStage2"]["Retry"][0]["ErrorEquals"] = BATCH_TRANSIENT

    (problem,) = found(edited(synth, "dev", batch_retrier), tmp_path)
    assert problem.startswith("retry-order: Stage1ToStage2: Retrier 1 ") and "raises only States.* errors" in problem


def test_states_all_before_another_retrier_is_found() -> None:
    rules = [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["States.Timeout"]}]
    problems = asl_contract.order_problems("Retrier", rules, composite=False)
    assert problems[0] == "Retrier 1 names States.ALL, which must be alone in the last retrier"
    assert "comes after States.ALL" in problems[1]
    fine = [
        {"ErrorEquals": ["States.TaskFailed"]},
        {"ErrorEquals": ["States.Timeout"]},
        {"ErrorEquals": ["States.ALL"]},
    ]
    assert asl_contract.order_problems("Catcher", fine, composite=False) == []


def test_a_selected_key_the_answer_lacks_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """PlanFanOut selects every key of its answer; an answer that declares one less (as the
    refusal path returned until now: allowed and reason only) is a States.Runtime waiting."""

    def drop(_: dict, config: dict) -> None:
        del function_of(config, "plan-fan-out")["//"]["answer"]["images"]

    (problem,) = found(edited(synth, "dev", drop), tmp_path)
    assert problem == (
        "selected: PlanFanOut: ResultSelector selects 'images', which the function's answer does not declare "
        "(States.Runtime, no Catch takes it)"
    )


def test_a_choice_on_a_key_not_kept_is_found(synth: SynthResult, tmp_path: Path) -> None:
    def unkeep(document: dict, _: dict) -> None:
        del document["States"]["GuardBudget"]["ResultSelector"]["allowed.$"]

    (problem,) = found(edited(synth, "dev", unkeep), tmp_path)
    assert problem.startswith("present: GuardBudgetAllowed: chooses on $.guard.allowed, which is not there")


def test_an_answer_that_grows_with_the_data_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """WriteParquet answered the list of its objects (one per date and site) until now."""

    def listed(_: dict, config: dict) -> None:
        function_of(config, "write-parquet")["//"]["answer"]["objects"] = "list"

    (problem,) = found(edited(synth, "dev", listed), tmp_path)
    assert problem.startswith("bounded: ") and "['list'] grow with the data" in problem


def test_the_bounds_come_with_the_declared_answer(synth: SynthResult, tmp_path: Path) -> None:
    """The check has no bounds of its own: the synthesized declaration carries each kind's bound
    (conf/pipeline.py's, the only copy). A larger text bound makes WriteParquet's answer too large;
    a declaration without bounds is one that grows with the data."""
    comment = function_of(synth.pipeline("dev"), "write-parquet")["//"]
    assert comment["answer_bounds"] == {"int": 20, "text": 2050}

    def larger(_: dict, config: dict) -> None:
        function_of(config, "write-parquet")["//"]["answer_bounds"]["text"] = 20_000

    (problem,) = found(edited(synth, "dev", larger), tmp_path)
    assert problem.startswith("bounded: aws_lambda_function.") and problem.endswith(
        "answer may take 40116 bytes, over 32768 (1/8 of 256 KiB)"
    )

    def unbounded(_: dict, config: dict) -> None:
        del function_of(config, "write-parquet")["//"]["answer_bounds"]

    (problem,) = found(edited(synth, "dev", unbounded), tmp_path)
    assert problem.endswith(
        "answer kinds ['int', 'text'] grow with the data: put the list in S3, answer its key and counts"
    )


def test_a_function_without_a_declared_answer_is_found(synth: SynthResult, tmp_path: Path) -> None:
    def undeclared(_: dict, config: dict) -> None:
        del function_of(config, "weather")["//"]["answer"]

    problems = found(edited(synth, "dev", undeclared), tmp_path)
    # Both states of the function: the enrichment and the listing after a failed fan-out.
    assert sorted(p.split(": its function (")[0] for p in problems) == [
        "selected: ListFailedShards",
        "selected: WeatherEnrichment",
    ]
    assert all("declares no answer" in p for p in problems)


def test_a_silent_fail_state_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """Yesterday's InvalidPriority: the Choice went straight to a Fail state, no notice."""

    def silent(document: dict, _: dict) -> None:
        document["States"]["Route"]["Default"] = "InvalidInput"

    (problem,) = found(edited(synth, "dev", silent), tmp_path)
    assert problem == (
        "notified: InvalidInput: reached from Route by its Next/Choice without a notice: put an SNS publish before it"
    )


def test_every_failure_ends_with_the_real_error_and_cause(synth: SynthResult) -> None:
    """The final Fail passes on the caught error and cause (ErrorPath/CausePath,
    https://docs.aws.amazon.com/step-functions/latest/dg/state-fail.html); every notice carries the
    execution's console link and the runbook."""
    document = json.loads(machine(synth.pipeline("prod"))["definition"])
    assert document["States"]["Failed"] == {
        "Type": "Fail",
        "ErrorPath": "States.Format('{}: {}', $.failed_state, $.error.Error)",
        "CausePath": "$.error.Cause",
    }
    notices = {n: s for n, s in document["States"].items() if s.get("Resource") == asl_contract.SNS_PUBLISH}
    assert set(notices) >= {
        "NotifyFailure",
        "NotifyInvalidInput",
        "NotifyNothingToProcess",
        "NotifyFailedShards",
        "NotifyShardsFailed",
        "NotifyShardsUnlisted",
    }
    for name, state in notices.items():
        message = state["Parameters"]["Message.$"]
        assert "console.aws.amazon.com/states/home" in message and "$$.Execution.Id" in message, name
        assert "Runbook: docs/runbooks/alert-response.md" in message, name
    failure = notices["NotifyFailure"]["Parameters"]["Message.$"]
    assert "$.error.Error, $.error.Cause" in failure


def test_every_bad_end_is_told_by_eventbridge(synth: SynthResult) -> None:
    """A time-out, an abort or an uncatchable error never reaches NotifyFailure: an EventBridge rule
    on the machine's Execution Status Change (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html)
    sends those ends to the alert topic (the preflight's alerts check proves topic and key admit it)."""
    config = synth.pipeline("prod")
    rules = config["resource"]["aws_cloudwatch_event_rule"]
    (name,) = [n for n in rules if "on-end" in n]
    pattern = json.loads(rules[name]["event_pattern"])
    assert pattern["source"] == ["aws.states"] and pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]
    (machine_name,) = config["resource"]["aws_sfn_state_machine"]
    assert pattern["detail"]["stateMachineArn"] == [f"${{aws_sfn_state_machine.{machine_name}.arn}}"]
    (target,) = [t for t in config["resource"]["aws_cloudwatch_event_target"].values() if name in t["rule"]]
    assert target["arn"].startswith("${aws_sns_topic.alerts_topic_")
    # Plain text (API_InputTransformer.html: "<instance> is in state <status>"); a JSON string
    # template would reach SNS with its quotes.
    message = target["input_transformer"]["input_template"]
    assert message.startswith("Odins Ravne: execution <name> ended <status>.") and not message.startswith('"')
    assert "<name> ended <status>" in message and "details/<arn>" in message and "alert-response.md" in message
    assert set(target["input_transformer"]["input_paths"].values()) <= {
        "$.detail.name",
        "$.detail.status",
        "$.detail.executionArn",
    }


def _absent(problems: list[str]) -> list[str]:
    return [p for p in problems if p.startswith("present: ")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["States"]["WeatherEnrichment"]["ResultSelector"].pop("missing.$"),
            "present: NotifyFailedShards: Parameters Message.$ reads $.weather.missing, which is not there",
        ),
        (
            lambda d: d["States"]["ListFailedShards"]["ResultSelector"].pop("missing.$"),
            "present: NotifyShardsFailed: Parameters Message.$ reads $.failed_shards.missing, which is not there",
        ),
        (
            lambda d: d["States"]["PlanFanOut"]["ResultSelector"].pop("images_per_shard.$"),
            "present: Stage0: Parameters Value.$ reads $.plan.images_per_shard, which is not there",
        ),
        (
            lambda d: d["States"]["Failed"].update(ErrorPath="$.nope"),
            "present: Failed: ErrorPath reads $.nope, which is not there",
        ),
        (
            lambda d: d["States"]["Stage1ToStage2"]["ItemSelector"].update({"queue.$": "$.route.nope"}),
            "present: Stage1ToStage2: ItemSelector queue.$ reads $.route.nope, which is not there",
        ),
    ],
    ids=["selector-missing", "listing-missing", "selector-images-per-shard", "fail-error-path", "item-selector"],
)
def test_a_path_no_state_writes_is_found(synth: SynthResult, tmp_path: Path, change, expected: str) -> None:
    """A JSONPath in Parameters, an ItemSelector or a Fail's ErrorPath that no state before it put
    in the state data is States.Runtime, which no Catch takes
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)."""
    (problem,) = _absent(found(edited(synth, "dev", lambda d, _: change(d)), tmp_path))
    assert problem.startswith(expected) and problem.endswith("(States.Runtime, no Catch takes it)")


def test_an_input_without_manifest_is_refused_before_any_lambda(synth: SynthResult, tmp_path: Path) -> None:
    """The input is the one thing no state wrote: PlanFanOut's "manifest.$": "$.manifest" on an input
    without it ({} or {"Manifest": ...}) is States.Runtime; an event that is not an S3 event
    breaks ManifestFromEvent. The first states check both (IsPresent, IsString) and route to a notice."""

    def unchecked(document: dict, _: dict) -> None:
        document["States"]["ManifestGiven"]["Choices"] = [
            {"Variable": "$.priority", "IsPresent": True, "Next": "Route"}
        ]
        document["States"]["FromTrigger"]["Choices"] = document["States"]["FromTrigger"]["Choices"][:1]

    problems = _absent(found(edited(synth, "dev", unchecked), tmp_path))
    assert {p.split(": ")[1] for p in problems} == {
        "ManifestFromEvent",  # $.event.detail.bucket.name, .object.key, .object
        "PlanFanOut",  # and every later state that reads $.manifest
        "GuardBudget",
        "Stage0",
        "Stage1ToStage2",
        "ListFailedShards",
        "WeatherEnrichment",
        "WriteParquet",
    }


def test_a_failed_notice_does_not_erase_the_error(synth: SynthResult, tmp_path: Path) -> None:
    """NotifyFailure's Catch with the default "$.error" would overwrite the caught pipeline error with
    SNS's, and Failed (ErrorPath/CausePath on $.error) would report that instead
    (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultpath.html)."""
    document = json.loads(machine(synth.pipeline("dev"))["definition"])
    notices = [s for s in document["States"].values() if s.get("Resource") == asl_contract.SNS_PUBLISH]
    assert notices and all(c["ResultPath"] == "$.notify_error" for s in notices for c in s["Catch"])

    def shared(document: dict, _: dict) -> None:
        document["States"]["NotifyFailure"]["Catch"][0]["ResultPath"] = "$.error"

    (problem,) = found(edited(synth, "dev", shared), tmp_path)
    assert problem.startswith("notified: Failed: reports $.error which the Catch of NotifyFailure overwrites")


@pytest.mark.parametrize(
    "errors",
    [["States.TaskFailed"], ["States.ALL"], ["States.ExceedToleratedFailureThreshold"], ["States.ResultWriterFailed"]],
)
def test_a_map_retrier_that_reruns_every_shard_is_found(errors: list[str]) -> None:
    """States.ALL and States.TaskFailed match States.ExceedToleratedFailureThreshold: retrying the Map
    would run every shard again. Only States.ItemReaderFailed (no child ran yet) may be retried
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)."""
    (problem,) = asl_contract.order_problems("Retrier", [{"ErrorEquals": errors}], composite="Map")
    assert problem == (
        f"Retrier 1 {errors} re-runs every child of the Map (States.ALL and States.TaskFailed match "
        "States.ExceedToleratedFailureThreshold too): retry only States.ItemReaderFailed, raised before any child runs"
    )
    assert asl_contract.order_problems("Retrier", [{"ErrorEquals": ["States.ItemReaderFailed"]}], composite="Map") == []


def test_a_map_retrier_on_all_errors_is_found_in_the_stack(synth: SynthResult, tmp_path: Path) -> None:
    def everything(document: dict, _: dict) -> None:
        document["States"]["Stage1ToStage2"]["Retry"][0]["ErrorEquals"] = ["States.ALL"]

    (problem,) = found(edited(synth, "dev", everything), tmp_path)
    assert problem.startswith("retry-order: Stage1ToStage2: Retrier 1 ['States.ALL'] re-runs every child")


def test_a_task_without_a_catch_to_a_notice_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """Without its Catch, a failed Stage0 ends the execution with no notice from the workflow (only
    the EventBridge backstop). A Catch that leads to the Fail directly is no notice either."""

    def uncaught(document: dict, _: dict) -> None:
        del document["States"]["Stage0"]["Catch"]
        document["States"]["ReadShards"]["Catch"][0]["Next"] = "Failed"

    problems = [p for p in found(edited(synth, "dev", uncaught), tmp_path) if p.startswith("notified: ")]
    assert problems == [
        "notified: Failed: reached from ReadShards by its Catch without a notice: put an SNS publish before it",
        "notified: Stage0: can fail without a notice: give it a Catch of States.ALL that leads to an SNS publish",
        "notified: ReadShards: can fail without a notice: give it a Catch of States.ALL that leads to an SNS publish",
    ]


def test_a_distributed_map_without_result_writer_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """Without a ResultWriter the Map gathers its children's outputs in the state, a failed child's
    error and cause included (input-output-resultwriter.html): 2 % of 10,000 shards with Batch causes
    of a few KB pass 256 KiB, States.DataLimitExceeded, uncatchable, on the degraded path."""
    document = json.loads(machine(synth.pipeline("dev"))["definition"])
    writer = document["States"]["Stage1ToStage2"]["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject" and writer["Parameters"]["Prefix"] == "map-results"

    def unwritten(document: dict, _: dict) -> None:
        del document["States"]["Stage1ToStage2"]["ResultWriter"]

    (problem,) = found(edited(synth, "dev", unwritten), tmp_path)
    assert problem.startswith("bounded: Stage1ToStage2: gathers every child's output")


def test_a_shadowed_retrier_names_the_retrier_that_takes_it() -> None:
    """[Timeout, TaskFailed] then [Timeout]: the earlier States.Timeout takes it (TaskFailed never
    matches States.Timeout, concepts-error-handling.html), so the message names the same error."""
    rules = [{"ErrorEquals": ["States.Timeout", "States.TaskFailed"]}, {"ErrorEquals": ["States.Timeout"]}]
    (problem,) = asl_contract.order_problems("Retrier", rules, composite=False)
    assert problem == (
        "Retrier 2 ['States.Timeout'] never applies: an earlier retrier (the same error) takes it first; "
        "put the specific one first"
    )


def test_a_fan_out_past_the_tolerance_names_the_failed_shards(synth: SynthResult) -> None:
    """Beyond the tolerated failures the Map fails (States.ExceedToleratedFailureThreshold,
    https://docs.aws.amazon.com/step-functions/latest/dg/maprun-fail-threshold.html) and leaves only
    its error and cause (concepts-error-handling.html): ListFailedShards asks the shard counter's
    function, in its listing mode, which shards have no output, and the notice names them with the
    error, cause and the command that runs just those again. A listing that fails is caught apart
    (the Map's error stays in $.error for the final Fail) into the notice without the list."""
    states = json.loads(machine(synth.pipeline("dev"))["definition"])["States"]
    assert states["Stage1ToStage2Failed"]["Next"] == "ListFailedShards"
    listing = states["ListFailedShards"]
    assert listing["Parameters"]["FunctionName"] == states["WeatherEnrichment"]["Parameters"]["FunctionName"]
    assert listing["Parameters"]["Payload"]["mode"] == "list_missing"
    assert listing["ResultSelector"] == {"shards.$": "$.Payload.shards", "missing.$": "$.Payload.missing"}
    assert listing["Next"] == "NotifyShardsFailed"
    assert listing["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.list_error", "Next": "NotifyShardsUnlisted"}
    ]
    message = states["NotifyShardsFailed"]["Parameters"]["Message.$"]
    assert "failed or stopped: {}. Run just those again: make rerun-shards ENV=<env> EXECUTION={}" in message
    assert message.endswith(
        "$$.Execution.Name, $.error.Error, $.error.Cause, $.failed_shards.shards, $.shards.summary.count, "
        "$.failed_shards.missing, $$.Execution.Name, $$.Execution.Id)"
    )
    unlisted = states["NotifyShardsUnlisted"]["Parameters"]["Message.$"]
    assert "List the failed shards and run just those again: make rerun-shards ENV=<env> EXECUTION={}" in unlisted
    for notice in ("NotifyShardsFailed", "NotifyShardsUnlisted"):
        assert states[notice]["Next"] == "Failed" and states[notice]["Catch"][0]["Next"] == "Failed"


def test_a_step_between_a_failure_and_its_notice_is_caught_too(synth: SynthResult, tmp_path: Path) -> None:
    """The Map's Catch leads through ListFailedShards to its notice: that Task must reach a notice
    when it fails as well, or a failed listing leaves the failed fan-out untold."""

    def uncaught(document: dict, _: dict) -> None:
        del document["States"]["ListFailedShards"]["Catch"]

    told = "can fail without a notice: give it a Catch of States.ALL that leads to an SNS publish"
    assert sorted(found(edited(synth, "dev", uncaught), tmp_path)) == [
        f"notified: ListFailedShards: {told}",
        f"notified: Stage1ToStage2: {told}",
    ]


def test_a_literal_brace_in_a_notice_template_is_found(synth: SynthResult, tmp_path: Path) -> None:
    """In States.Format a brace marks an argument ({}) unless escaped
    (https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html): the invalid-input
    notice once quoted {"manifest": ...} in its text, and its publish failed on the emulator."""

    def braced(document: dict, _: dict) -> None:
        message = document["States"]["NotifyInputWithoutManifest"]["Parameters"]["Message.$"]
        document["States"]["NotifyInputWithoutManifest"]["Parameters"]["Message.$"] = message.replace(
            "the input must give", 'the input must be {"manifest": ...}, give'
        )

    (problem,) = _absent(found(edited(synth, "dev", braced), tmp_path))
    assert problem.startswith(
        "present: NotifyInputWithoutManifest: Parameters Message.$ has a States.Format template with a brace"
    )
