"""The ASL contract: what real Step Functions does with a state machine that moto lets pass.

Reads synthesized Terraform JSON only (a ``tools/preflight.py`` check, ``workflow``); works on any
``aws_sfn_state_machine`` whose Lambda functions declare their answer in ``"//": {"answer":
{key: kind}}`` (ignored by Terraform; ``modules/workflow.py`` writes it from ``conf/pipeline.py``).
Each rule is a failure no Catch takes, or a Retry or notice that never happens:

- selected: every ``$.Payload.<key>`` a Lambda task's ResultSelector selects is in the function's
  declared answer, and every Choice variable under a Lambda task's ResultPath is a key it keeps. A
  path the answer lacks raises States.Runtime, which no Retry or Catch handles
  (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html,
  https://docs.aws.amazon.com/step-functions/latest/dg/input-output-inputpath-params.html);
- bounded: every declared answer is scalars (a list or object grows with the data) and fits well
  inside the 256 KiB a state's input or output may hold (States.DataLimitExceeded, uncatchable:
  https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html);
- retry order, on every Task, Map and Parallel, Map children included: States.ALL only alone and in
  the last retrier, no retrier after one that matches all its errors already (States.TaskFailed
  matches every error but States.Timeout), and a Map or Parallel retries only States.* errors (it
  raises nothing else: a failed child counts against the tolerated failures). The first retrier
  whose ErrorEquals matches is the one used (error-handling page above); the same for Catchers;
- notified: every Fail state is reached only from an SNS publish (a notice) or from a Catch of
  one, so no terminal failure path is silent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

DATA_LIMIT = 256 * 1024  # bytes of a state's input or output
ANSWER_SHARE = 8  # one answer may take at most 1/8 of it: the execution state holds several
KIND_BOUND = {"bool": 5, "int": 20, "number": 32}  # JSON characters at most; text: its declared bound
TEXT_BOUND = 2048
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
PAYLOAD_KEY = re.compile(r"^\$\.Payload\.([A-Za-z0-9_]+)$")
ALL_BUT_TIMEOUT = "States.TaskFailed"


def states_of(document: dict) -> Iterator[tuple[str, str, dict]]:
    """``(where, name, state)`` for every state, those of Map processors and Parallel branches too."""
    yield from _walk(document, "")


def _walk(document: dict, where: str) -> Iterator[tuple[str, str, dict]]:
    for name, state in document.get("States", {}).items():
        yield where, name, state
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            yield from _walk(inner, f"{where}{name}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from _walk(branch, f"{where}{name}[{index}]/")


def order_problems(kind: str, rules: list[dict], *, composite: bool) -> list[str]:
    """Retriers or Catchers that can never be used, in the order Step Functions tries them."""
    out, matched = [], set()
    for index, rule in enumerate(rules):
        errors = list(rule.get("ErrorEquals", []))
        if "States.ALL" in errors and (len(errors) > 1 or index != len(rules) - 1):
            out.append(f"{kind} {index + 1} names States.ALL, which must be alone in the last {kind.lower()}")
        if "States.ALL" in matched:
            out.append(f"{kind} {index + 1} {errors} comes after States.ALL: it never applies")
            continue
        shadowed = [
            e
            for e in errors
            if e in matched or (ALL_BUT_TIMEOUT in matched and e not in ("States.Timeout", "States.ALL"))
        ]
        if shadowed:
            out.append(
                f"{kind} {index + 1} {shadowed} never applies: an earlier {kind.lower()} "
                f"({ALL_BUT_TIMEOUT if ALL_BUT_TIMEOUT in matched else 'the same error'}) takes it first; "
                "put the specific one first"
            )
        if composite and kind == "Retrier":
            foreign = [e for e in errors if not e.startswith("States.")]
            if foreign:
                out.append(
                    f"Retrier {index + 1} {foreign} never applies: a Map or Parallel raises only States.* "
                    "errors (a failed child is counted against ToleratedFailurePercentage)"
                )
        matched.update(errors)
    return out


def answer_bound(answer: dict[str, str]) -> int | None:
    """JSON bytes an answer of these kinds takes at most, None when a kind has no bound."""
    total = 2
    for key, kind in answer.items():
        bound = TEXT_BOUND + 2 if kind == "text" else KIND_BOUND.get(kind)
        if bound is None:
            return None
        total += len(key) + 4 + bound
    return total


def lambda_tasks(document: dict) -> Iterator[tuple[str, str, dict]]:
    for where, name, state in states_of(document):
        if state.get("Type") == "Task" and state.get("Resource") == LAMBDA_INVOKE:
            yield where, name, state


def selected_problems(document: dict, answer_of: Any) -> Iterator[tuple[str, str]]:
    """``(state, problem)`` for paths a Lambda task or a Choice selects that the answer lacks.
    ``answer_of(function_name_value)`` gives the declared answer (a dict) or None."""
    kept: dict[str, set[str]] = {}  # ResultPath -> keys the state keeps there
    for where, name, state in lambda_tasks(document):
        function = state.get("Parameters", {}).get("FunctionName")
        answer = answer_of(function)
        if answer is None:
            yield f"{where}{name}", f'its function ({function}) declares no answer ("//": {{"answer": ...}})'
            continue
        selector = state.get("ResultSelector")
        if not selector:
            yield f"{where}{name}", "keeps the whole Payload: select the declared keys in ResultSelector"
            continue
        keys = set()
        for field, path in selector.items():
            match = PAYLOAD_KEY.match(path) if isinstance(path, str) and field.endswith(".$") else None
            if not match:
                yield (
                    f"{where}{name}",
                    f"ResultSelector {field} = {path!r} is not one key of the answer ($.Payload.<key>)",
                )
                continue
            if match.group(1) not in answer:
                yield (
                    f"{where}{name}",
                    f"ResultSelector selects {match.group(1)!r}, which the function's answer does not declare "
                    "(States.Runtime, no Catch takes it)",
                )
            keys.add(field[:-2])
        if isinstance(state.get("ResultPath"), str):
            kept[state["ResultPath"]] = keys
    for where, name, state in states_of(document):
        if state.get("Type") != "Choice":
            continue
        for variable in _choice_variables(state):
            for path, keys in kept.items():
                if variable.startswith(path + "."):
                    key = variable[len(path) + 1 :].split(".")[0]
                    if key not in keys:
                        yield (
                            f"{where}{name}",
                            f"chooses on {variable}, which the state writing {path} does not keep "
                            "(States.Runtime, no Catch takes it)",
                        )


def _choice_variables(state: dict) -> Iterator[str]:
    todo = list(state.get("Choices", []))
    while todo:
        rule = todo.pop()
        for field, value in rule.items():
            if field == "Variable" or (field.endswith("Path") and isinstance(value, str)):
                yield value
        todo += [*rule.get("And", []), *rule.get("Or", [])] + ([rule["Not"]] if "Not" in rule else [])


def silent_failures(document: dict) -> Iterator[tuple[str, str]]:
    """Fail states (top level and in every processor) reached other than through a notice."""
    for where, states in _scopes(document, ""):
        sources: dict[str, list[tuple[str, dict, bool]]] = {}
        for name, state in states.items():
            for target in [state.get("Next"), state.get("Default"), *(c.get("Next") for c in state.get("Choices", []))]:
                if target:
                    sources.setdefault(target, []).append((name, state, False))
            for catcher in state.get("Catch", []):
                sources.setdefault(catcher["Next"], []).append((name, state, True))
        for name, state in states.items():
            if state.get("Type") != "Fail":
                continue
            for source, origin, caught in sources.get(name, []):
                notice = origin.get("Type") == "Task" and origin.get("Resource") == SNS_PUBLISH
                if not notice:
                    how = "its Catch" if caught else "its Next/Choice"
                    yield (
                        f"{where}{name}",
                        f"reached from {source} by {how} without a notice: put an SNS publish before it",
                    )


def _scopes(document: dict, where: str) -> Iterator[tuple[str, dict]]:
    yield where, document.get("States", {})
    for name, state in document.get("States", {}).items():
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            yield from _scopes(inner, f"{where}{name}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from _scopes(branch, f"{where}{name}[{index}]/")


def problems(document: dict, answers: dict[str, dict[str, str]], answer_of: Any) -> Iterator[tuple[str, str, str]]:
    """``(rule, where, problem)`` for one state machine. ``answers``: declared answers by function
    (address), ``answer_of``: a task's FunctionName value -> its declared answer or None."""
    for where, name, state in states_of(document):
        composite = state.get("Type") in ("Map", "Parallel")
        for kind, field in (("Retrier", "Retry"), ("Catcher", "Catch")):
            for problem in order_problems(kind, state.get(field, []), composite=composite):
                yield "retry-order", f"{where}{name}", problem
    for where, problem in selected_problems(document, answer_of):
        yield "selected", where, problem
    for function, answer in answers.items():
        bound = answer_bound(answer)
        if bound is None:
            kinds = sorted({k for k in answer.values() if k not in KIND_BOUND and k != "text"})
            yield (
                "bounded",
                function,
                f"answer kinds {kinds} grow with the data: put the list in S3, answer its key and counts",
            )
        elif bound > DATA_LIMIT // ANSWER_SHARE:
            yield (
                "bounded",
                function,
                f"answer may take {bound} bytes, over {DATA_LIMIT // ANSWER_SHARE} (1/{ANSWER_SHARE} of 256 KiB)",
            )
    for where, problem in silent_failures(document):
        yield "notified", where, problem


def definition_of(machine: dict) -> dict:
    definition = machine.get("definition")
    return json.loads(definition) if isinstance(definition, str) else definition or {}
