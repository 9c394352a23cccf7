"""The ASL contract: what real Step Functions does with a state machine that moto lets pass.

Reads synthesized Terraform JSON only (a ``tools/preflight.py`` check, ``workflow``); works on any
``aws_sfn_state_machine`` whose Lambda functions declare their answer in ``"//": {"answer":
{key: kind}, "answer_bounds": {kind: most JSON characters}}`` (ignored by Terraform;
``modules/workflow.py`` writes both from ``conf/pipeline.py``, so the bounds live there only).
Each rule is a failure no Catch takes, or a Retry or notice that never happens:

- selected: every ``$.Payload.<key>`` a Lambda task's ResultSelector selects is in the function's
  declared answer (what a later state may read of it is the ``present`` rule's). A
  path the answer lacks raises States.Runtime, which no Retry or Catch handles
  (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html,
  https://docs.aws.amazon.com/step-functions/latest/dg/input-output-inputpath-params.html);
- bounded: every declared answer is scalars (a list or object grows with the data) and fits well
  inside the 256 KiB a state's input or output may hold (States.DataLimitExceeded, uncatchable:
  https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html); a Distributed Map writes
  its children's outputs to S3 (ResultWriter): gathered in the state, the failed children's errors
  and causes alone could pass the limit
  (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html);
- retry order, on every Task, Map and Parallel, Map children included: States.ALL only alone and in
  the last retrier, no retrier after one that matches all its errors already (States.TaskFailed
  matches every error but States.Timeout), and a Map or Parallel retries only States.* errors (it
  raises nothing else: a failed child counts against the tolerated failures), and a Map only
  States.ItemReaderFailed (any other error, States.ALL and States.TaskFailed matching
  States.ExceedToleratedFailureThreshold, would run every child again). The first retrier
  whose ErrorEquals matches is the one used (error-handling page above); the same for Catchers;
- notified: every Fail state is reached only from an SNS publish (a notice) or from a Catch of
  one, every top-level Task, Map and Parallel but the notices has a Catch of States.ALL leading to
  a notice (through Pass states, and Tasks that go on to a notice whether they succeed or fail),
  and a failed publish's Catch does not overwrite the error the Fail reports. A publish that fails
  still ends in its Fail: the EventBridge rule on the execution's end is the backstop;
- present: every JSONPath a state reads (Parameters, ItemSelector, ItemReader, InputPath, Choice
  variables, intrinsic arguments, a Fail's ErrorPath/CausePath) is in the state data on every way
  to that state: what the Choice states proved of the input, or what an earlier state's
  ResultPath/ResultSelector/Result/Parameters/OutputPath put there. A missing path raises
  States.Runtime, which no Retry or Catch handles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DATA_LIMIT = 256 * 1024  # bytes of a state's input or output
ANSWER_SHARE = 8  # one answer may take at most 1/8 of it: the execution state holds several
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
PAYLOAD_KEY = re.compile(r"^\$\.Payload\.([A-Za-z0-9_]+)$")
ALL_BUT_TIMEOUT = "States.TaskFailed"
# The one error a Map raises before any child ran: reading the items failed. Every other (the
# tolerance exceeded, the results not written, States.ALL/TaskFailed matching those) would run
# every child again (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
MAP_RETRIABLE = frozenset({"States.ItemReaderFailed"})


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


def order_problems(kind: str, rules: list[dict], *, composite: bool | str) -> list[str]:
    """Retriers or Catchers that can never be used, in the order Step Functions tries them, and a
    Map's retriers that would run every child again. ``composite``: "Map", "Parallel" or False."""
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
                f"({'the same error' if all(e in matched for e in shadowed) else ALL_BUT_TIMEOUT}) takes it first; "
                "put the specific one first"
            )
        if composite and kind == "Retrier":
            foreign = [e for e in errors if not e.startswith("States.")]
            if foreign:
                out.append(
                    f"Retrier {index + 1} {foreign} never applies: a Map or Parallel raises only States.* "
                    "errors (a failed child is counted against ToleratedFailurePercentage)"
                )
            rerun = [e for e in errors if e.startswith("States.") and e not in MAP_RETRIABLE]
            if composite == "Map" and rerun:
                out.append(
                    f"Retrier {index + 1} {rerun} re-runs every child of the Map (States.ALL and "
                    "States.TaskFailed match States.ExceedToleratedFailureThreshold too): retry only "
                    f"{', '.join(sorted(MAP_RETRIABLE))}, raised before any child runs"
                )
        matched.update(errors)
    return out


def answer_bound(answer: dict[str, str], bounds: dict[str, int]) -> int | None:
    """JSON bytes an answer of these kinds takes at most (``bounds``: the most JSON characters of a
    value of each kind, declared with the answer), None when a kind has no bound."""
    if any(kind not in bounds for kind in answer.values()):
        return None
    return 2 + sum(len(key) + 4 + bounds[kind] for key, kind in answer.items())


def lambda_tasks(document: dict) -> Iterator[tuple[str, str, dict]]:
    for where, name, state in states_of(document):
        if state.get("Type") == "Task" and state.get("Resource") == LAMBDA_INVOKE:
            yield where, name, state


def selected_problems(document: dict, answer_of: Any) -> Iterator[tuple[str, str]]:
    """``(state, problem)`` for paths a Lambda task selects that its declared answer lacks.
    ``answer_of(function_name_value)`` gives the declared answer (a dict) or None."""
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
            read = [p for field in ("ErrorPath", "CausePath") for p in references(state.get(field) or "")]
            for source, origin, caught in sources.get(name, []):
                notice = origin.get("Type") == "Task" and origin.get("Resource") == SNS_PUBLISH
                for catcher in origin.get("Catch", []) if notice and caught else []:
                    at = _parse(catcher.get("ResultPath", "$")) if catcher.get("ResultPath", "$") else None
                    if catcher["Next"] == name and at is not None and any(p[: len(at)] == at for p in read):
                        yield (
                            f"{where}{name}",
                            f"reports {catcher.get('ResultPath', '$')} which the Catch of {source} overwrites with "
                            "the failed publish's error: give that Catch a ResultPath of its own",
                        )
                if not notice:
                    how = "its Catch" if caught else "its Next/Choice"
                    yield (
                        f"{where}{name}",
                        f"reached from {source} by {how} without a notice: put an SNS publish before it",
                    )


def uncaught_failures(document: dict) -> Iterator[tuple[str, str]]:
    """Top-level Tasks, Maps and Parallels whose failure reaches no notice: each needs a Catch of
    States.ALL that leads to an SNS publish, through Pass states and through Tasks that gather what
    the notice tells (such a Task goes on to a notice both when it succeeds and, by its own Catch,
    when it fails). The notices themselves are exempt: a failed publish is told by the EventBridge
    rule on the execution's end, the backstop. Map children are too: a failed child is counted
    against the tolerated failures, then the Map fails."""
    states = document.get("States", {})

    def caught_to_notice(state: dict, seen: frozenset[str]) -> bool:
        return any(
            "States.ALL" in catcher.get("ErrorEquals", []) and leads_to_notice(catcher["Next"], seen)
            for catcher in state.get("Catch", [])
        )

    def leads_to_notice(target: str | None, seen: frozenset[str]) -> bool:
        state = states.get(target) if target not in seen else None
        if state is None:
            return False
        seen = seen | {target}
        if state.get("Resource") == SNS_PUBLISH:
            return True
        if state.get("Type") == "Pass":
            return leads_to_notice(state.get("Next"), seen)
        return (
            state.get("Type") == "Task" and leads_to_notice(state.get("Next"), seen) and caught_to_notice(state, seen)
        )

    for name, state in states.items():
        if state.get("Type") not in ("Task", "Map", "Parallel") or state.get("Resource") == SNS_PUBLISH:
            continue
        if not caught_to_notice(state, frozenset({name})):
            yield name, "can fail without a notice: give it a Catch of States.ALL that leads to an SNS publish"


def _scopes(document: dict, where: str) -> Iterator[tuple[str, dict]]:
    yield where, document.get("States", {})
    for name, state in document.get("States", {}).items():
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            yield from _scopes(inner, f"{where}{name}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from _scopes(branch, f"{where}{name}[{index}]/")


# --- present: every JSONPath a state reads is in the state data on every way there ------------------

Path = tuple[str, ...]
REFERENCE = re.compile(r"(?<![$\w])\$(?!\$)((?:\.[A-Za-z0-9_]+)*)")
FORMAT_TEMPLATE = re.compile(r"States\.Format\(\s*'((?:[^'\\]|\\.)*)'")
QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")
COMPARED_PATH = re.compile(r"^(String|Numeric|Boolean|Timestamp)\w*Path$")


@dataclass(frozen=True)
class Data:
    """What is known to be in the state data: ``known`` paths (their prefixes too) and ``open``
    paths whose content is not modelled (anything under them is taken to be there)."""

    known: frozenset[Path] = frozenset()
    open: frozenset[Path] = frozenset()

    def has(self, path: Path) -> bool:
        return not path or path in self.known or any(path[:n] in self.open for n in range(len(path) + 1))

    def add(self, path: Path, *, opened: bool = False) -> Data:
        prefixes = {path[:n] for n in range(1, len(path) + 1)}
        return Data(self.known | prefixes, self.open | ({path} if opened else set()))

    def under(self, path: Path) -> Data:
        """The data at ``path``, as the root (InputPath, OutputPath)."""
        if any(path[:n] in self.open for n in range(len(path) + 1)):
            return Data(open=frozenset({()}))
        cut = len(path)
        return Data(
            frozenset(p[cut:] for p in self.known if p[:cut] == path and len(p) > cut),
            frozenset(p[cut:] for p in self.open if p[:cut] == path),
        )

    def put(self, path: Path, result: Data) -> Data:
        """``result`` placed at ``path`` (ResultPath): what was there is replaced."""
        if not path:
            return result
        kept = Data(
            frozenset(p for p in self.known if p[: len(path)] != path),
            frozenset(p for p in self.open if p[: len(path)] != path),
        ).add(path)
        return Data(kept.known | {path + p for p in result.known}, kept.open | {path + p for p in result.open})


def _parse(path: str) -> Path | None:
    """``$.a.b`` -> ("a", "b"); None for what is not a plain JSONPath of the state data."""
    match = re.fullmatch(r"\$((?:\.[A-Za-z0-9_]+)*)", path)
    return tuple(match.group(1).split(".")[1:]) if match else None


def references(value: str) -> Iterator[Path]:
    """State-data paths a ``.$`` value reads: a path, or the path arguments of an intrinsic
    (quoted text and ``$$.`` context paths left out)."""
    if value.startswith("$$"):
        return
    for match in REFERENCE.finditer(QUOTED.sub("''", value)):
        yield tuple(match.group(1).split(".")[1:])


def _template(template: Any, data: Data, where: str) -> Iterator[str]:
    """Problems of a Parameters/ItemSelector/ResultSelector template read against ``data``."""
    if isinstance(template, dict):
        for field, value in template.items():
            if field.endswith(".$") and isinstance(value, str):
                for template_text in FORMAT_TEMPLATE.findall(value):
                    if "{" in template_text.replace("{}", "").replace("\\{", "").replace("\\}", "").replace("}", "{"):
                        yield (
                            f"{where} {field} has a States.Format template with a brace that is no {{}} "
                            "placeholder (escape a literal one as \\{)"
                        )
                for path in references(value):
                    if not data.has(path):
                        yield f"{where} {field} reads {'$' + ''.join('.' + p for p in path)}, which is not there"
            else:
                yield from _template(value, data, where)
    elif isinstance(template, list):
        for value in template:
            yield from _template(value, data, where)


def _shape(template: Any, source: Data) -> Data:
    """The data a template produces: its fields; a field taken from the data is open unless it
    is one known leaf."""
    out = Data()
    if not isinstance(template, dict):
        return Data(open=frozenset({()}))
    for field, value in template.items():
        key = field[:-2] if field.endswith(".$") else field
        if field.endswith(".$"):
            out = out.add((key,), opened=True)
        elif isinstance(value, dict):
            inner = _shape(value, source)
            out = out.add((key,))
            out = Data(out.known | {(key, *p) for p in inner.known}, out.open | {(key, *p) for p in inner.open})
        else:
            out = out.add((key,))
    return out


def _literal(value: Any) -> Data:
    out = Data()
    if isinstance(value, dict):
        for key, inner in value.items():
            sub = _literal(inner)
            out = out.add((key,))
            out = Data(out.known | {(key, *p) for p in sub.known}, out.open | {(key, *p) for p in sub.open})
    return out


def _rule_facts(rule: dict, data: Data, where: str, out: list[str]) -> tuple[Data, Data]:
    """(data when ``rule`` matches, data when it does not); reading a variable that is not there
    is a problem (a comparison on a missing variable is States.Runtime; IsPresent is not)."""
    if "And" in rule:
        true = data
        for inner in rule["And"]:
            true, _ = _rule_facts(inner, true, where, out)
        return true, data
    if "Or" in rule:
        false = data
        for inner in rule["Or"]:
            _, false = _rule_facts(inner, false, where, out)
        return data, false
    if "Not" in rule:
        true, false = _rule_facts(rule["Not"], data, where, out)
        return false, true
    path = _parse(rule.get("Variable", ""))
    if path is None:
        return data, data
    if "IsPresent" in rule:
        present = data.add(path)
        return (present, data) if rule["IsPresent"] else (data, present)
    if not data.has(path):
        out.append(f"{where} chooses on {rule['Variable']}, which is not there")
    for field, value in rule.items():
        other = _parse(value) if COMPARED_PATH.match(field) and isinstance(value, str) else None
        if other is not None and not data.has(other):
            out.append(f"{where} compares with {value}, which is not there")
    return data.add(path), data.add(path)


def absent_paths(document: dict, data: Data = Data(), where: str = "") -> Iterator[tuple[str, str]]:
    """``(state, problem)`` for every JSONPath a state reads that is not in the state data on some
    way there (States.Runtime, which no Retry or Catch handles:
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). The
    execution's input is taken to hold only what the Choice states have checked is present."""
    states, seen, todo, reported = document.get("States", {}), set(), [(document.get("StartAt"), data)], set()
    while todo:
        name, data = todo.pop()
        if (name, data) in seen or name not in states:
            continue
        seen.add((name, data))
        state, problems, follow = states[name], [], []
        here = f"{where}{name}"
        given = data
        if isinstance(state.get("InputPath"), str):
            path = _parse(state["InputPath"])
            if path is not None and not data.has(path):
                problems.append(f"InputPath {state['InputPath']} is not there")
            data = data.under(path or ())
        kind = state.get("Type")
        if kind == "Choice":
            rest = data
            for rule in state.get("Choices", []):
                true, rest = _rule_facts(rule, rest, "", problems)
                follow.append((rule["Next"], true))
            if state.get("Default"):
                follow.append((state["Default"], rest))
        elif kind == "Fail":
            for field in ("ErrorPath", "CausePath"):
                if isinstance(state.get(field), str):
                    problems += [
                        f"{field} reads {state[field]}, which is not there"
                        for p in references(state[field])
                        if not data.has(p)
                    ]
        elif kind in ("Pass", "Task", "Map", "Parallel", "Wait"):
            for field in ("Parameters", "ItemSelector", "ItemReader"):
                problems += list(_template(state.get(field), data, field))
            if kind == "Pass":
                result = (
                    _shape(state["Parameters"], data)
                    if "Parameters" in state
                    else (_literal(state["Result"]) if "Result" in state else data)
                )
            elif state.get("ResultSelector"):
                # the ResultSelector's own paths are the "selected" rule's (the answer declaration)
                result = _shape(state["ResultSelector"], data)
            else:
                result = Data(open=frozenset({()}))
            for catcher in state.get("Catch", []):
                at = catcher.get("ResultPath", "$")
                error = Data().add(("Error",)).add(("Cause",))
                follow.append((catcher["Next"], given if at is None else given.put(_parse(at) or (), error)))
            after = (
                given
                if "ResultPath" in state and state["ResultPath"] is None
                else given.put(_parse(state.get("ResultPath", "$")) or (), result)
            )
            if isinstance(state.get("OutputPath"), str):
                after = after.under(_parse(state["OutputPath"]) or ())
            if state.get("Next"):
                follow.append((state["Next"], after))
            inner = state.get("ItemProcessor") or state.get("Iterator")
            if inner:
                items = _shape(state["ItemSelector"], data) if "ItemSelector" in state else Data(open=frozenset({()}))
                yield from absent_paths(inner, items, f"{here}/")
            for index, branch in enumerate(state.get("Branches", [])):
                yield from absent_paths(branch, data, f"{here}[{index}]/")
        for problem in problems:
            if (here, problem) not in reported:
                reported.add((here, problem))
                yield here, f"{problem.strip()} on some way here (States.Runtime, no Catch takes it)"
        todo += follow


def problems(
    document: dict, answers: dict[str, dict[str, str]], answer_of: Any, bounds: dict[str, dict[str, int]]
) -> Iterator[tuple[str, str, str]]:
    """``(rule, where, problem)`` for one state machine. ``answers``: declared answers by function
    (address), ``answer_of``: a task's FunctionName value -> its declared answer or None,
    ``bounds``: by function, the most JSON characters of a value of each kind its answer declares
    (a kind without one grows with the data)."""
    for where, name, state in states_of(document):
        composite = state.get("Type") if state.get("Type") in ("Map", "Parallel") else False
        for kind, field in (("Retrier", "Retry"), ("Catcher", "Catch")):
            for problem in order_problems(kind, state.get(field, []), composite=composite):
                yield "retry-order", f"{where}{name}", problem
    for where, name, state in states_of(document):
        mode = (state.get("ItemProcessor") or {}).get("ProcessorConfig", {}).get("Mode")
        if state.get("Type") == "Map" and mode == "DISTRIBUTED" and "Resource" not in state.get("ResultWriter", {}):
            yield (
                "bounded",
                f"{where}{name}",
                "gathers every child's output (a failed child's error and cause too) in the state: "
                "write them to S3 with a ResultWriter (Resource, Parameters)",
            )
    for where, problem in selected_problems(document, answer_of):
        yield "selected", where, problem
    for function, answer in answers.items():
        kind_bounds = bounds.get(function, {})
        bound = answer_bound(answer, kind_bounds)
        if bound is None:
            kinds = sorted({k for k in answer.values() if k not in kind_bounds})
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
    for where, problem in absent_paths(document):
        yield "present", where, problem
    for where, problem in silent_failures(document):
        yield "notified", where, problem
    for where, problem in uncaught_failures(document):
        yield "notified", where, problem


def definition_of(machine: dict) -> dict:
    definition = machine.get("definition")
    return json.loads(definition) if isinstance(definition, str) else definition or {}
