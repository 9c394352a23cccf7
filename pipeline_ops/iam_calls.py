"""Every AWS call this pipeline's code makes, found in the code, checked by ``tools.iam_check``.

    python -m pipeline_ops.iam_calls cdktf.out/stacks [ENV ...] [--every] [--quiet-unused]   # make iam-check

Found statically, so a new call is checked without anyone listing it: an AST scan of each Lambda
folder (``lambda_src/<fn>/`` + ``_shared``) and each stage image (``images/<stage>/`` + ``runtime``)
finds the names bound to ``boto3.client("<service>")`` and every ``<name>.<operation>(...)`` /
``<name>.get_paginator("<operation>")`` on them (and ``boto3.client("<service>").<operation>(...)``);
botocore's service model turns the method into its API operation, ``tools.iam_check.sdk_action``
into the IAM action. It fails closed: a boto3 use it cannot follow (a service in a variable,
``getattr``, a client in a container, boto3's resource API) is an error naming file:line.

Which resource a call touches: a ``Name=``/``jobQueue=``-style argument read from ``os.environ``
is that variable of the deployed unit; otherwise every ARN or name in the unit's environment
that has the action's resource format (``policy_sentry``). S3 object calls: the bucket and key
prefix the code reads from ``os.environ`` (``Bucket=``, ``Key=f"{prefix}/..."``); where the code
builds them at run time, a read touches each location the step ``reads`` in ``conf/pipeline.py``
and a write the location it ``writes``, in the bucket its ``<BUCKET>_BUCKET`` names; a listing is
ListBucket on that bucket with each location it ``reads`` as its ``s3:prefix``. The state
machine's own calls (every Task state) come from ``tools.iam_implied``; this module gives it the
values of the JSONPath parameters (the Map's job queues, its shard list's key).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conf.pipeline import PIPELINE, PipelineSpec, Step
from tools import cli
from tools.iam_check import Call, Config, IamCheckError, check, report, resource_formats, sdk_action

REPO = Path(__file__).resolve().parent.parent
S3_READ_OPS = {"GetObject", "HeadObject", "GetObjectVersion"}
# A listing is s3:ListBucket on the bucket, the listed prefix its s3:prefix condition key
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html).
S3_LIST_OPS = {"ListObjectsV2", "ListObjects"}
S3_WRITE_OPS = {
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "DeleteObject",
}
# boto3's managed transfers are no API operations: the ones they start (S3 user guide, "Uploading
# and copying objects using multipart upload": https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html).
TRANSFERS = {
    "upload_file": "PutObject",
    "upload_fileobj": "PutObject",
    "download_file": "GetObject",
    "download_fileobj": "GetObject",
}
NOT_CALLS = {"exceptions", "meta", "get_paginator", "get_waiter", "can_paginate", "close"}


@dataclass(frozen=True)
class Found:
    """One SDK call in the code: service, API operation, where, and the environment variables its
    arguments read: the resource's (``env_arg``), an S3 ``Bucket=``'s and the variable an S3
    ``Key=`` f-string starts with (``f"{source}/..."`` with ``source = os.environ[...]``)."""

    service: str
    operation: str
    where: str
    env_arg: str | None = None
    bucket_env: str | None = None
    key_env: str | None = None
    versioned: bool = False  # passes VersionId: a GetObject of a version needs s3:GetObjectVersion too


@cache
def _operations(service: str) -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def _is_client_call(node: ast.AST) -> bool:
    """``boto3.client(...)``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "boto3"
    )


def _literal_service(node: ast.Call) -> str | None:
    """The service of ``boto3.client("s3")`` / ``boto3.client(service_name="s3")``; None when not a literal."""
    given = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "service_name"), None)
    return given.value if isinstance(given, ast.Constant) and isinstance(given.value, str) else None


def _client_service(node: ast.AST) -> str | None:
    """``boto3.client("s3")`` anywhere inside ``node`` (e.g. ``s3 or boto3.client("s3")``)."""
    for sub in ast.walk(node):
        if _is_client_call(sub) and _literal_service(sub):
            return _literal_service(sub)
    return None


def _unfollowed(path: Path, tree: ast.AST, clients: dict[str, str]) -> Iterator[str]:
    """Every use of boto3 the scan cannot follow, as ``file:line: what``: it fails closed, a call it
    cannot see is never silently left unchecked. It follows a client from ``boto3.client("<literal>")``
    bound to a name (directly, or in ``x or ...`` / ``... if ... else ...``), or called at once
    (``boto3.client("s3").get_object(...)``), and its calls ``name.<operation>(...)``."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "boto3":
            yield f"{where}: from {node.module} import ... is not scanned; import boto3 and call boto3.client(...)"
        if isinstance(node, ast.Import) and any(a.name == "boto3" and a.asname for a in node.names):
            yield f"{where}: boto3 imported under another name is not scanned; import boto3"
        if isinstance(node, ast.Attribute) and ast.unparse(node) in (
            "boto3.resource",
            "boto3.Session",
            "boto3.session",
        ):
            yield f"{where}: {ast.unparse(node)} is not scanned; use boto3.client(...)"
        if _is_client_call(node):
            if not _literal_service(node):
                yield f"{where}: {ast.unparse(node)} names its service in a variable; write the service name literally"
                continue
            up = parents.get(node)
            while isinstance(up, (ast.BoolOp, ast.IfExp)):
                up = parents.get(up)
            chained = isinstance(parents.get(node), ast.Attribute) and isinstance(parents.get(parents[node]), ast.Call)
            bound = isinstance(up, (ast.Assign, ast.AnnAssign)) and all(
                isinstance(t, ast.Name) for t in (up.targets if isinstance(up, ast.Assign) else [up.target])
            )
            paired = isinstance(up, ast.Tuple) and isinstance(parents.get(up), ast.Assign)
            if not (chained or bound or paired):
                yield (
                    f"{where}: a client held in {ast.unparse(up) if up else 'an expression'} is not scanned; "
                    "bind it to a name"
                )
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) == "getattr"
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in clients
        ):
            yield f"{where}: {ast.unparse(node)} names an operation at run time; call {node.args[0].id}.<op>(...)"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in clients
            and node.attr not in NOT_CALLS
            and not (isinstance(parents.get(node), ast.Call) and parents[node].func is node)
        ):
            yield f"{where}: {ast.unparse(node)} is passed on, not called; call it where it runs"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in clients
            and node.attr not in NOT_CALLS
        ):
            yield f"{where}: {ast.unparse(node)} reaches a client through an attribute; bind it to a name first"
        if (
            isinstance(node, ast.Assign)
            and any(not isinstance(t, ast.Name) for t in node.targets)
            and isinstance(node.value, ast.Name)
            and node.value.id in clients
        ):
            yield f"{where}: client {node.value.id} stored in {ast.unparse(node.targets[0])} is not scanned"
        if isinstance(node, (ast.Dict, ast.List, ast.Set)) or (
            isinstance(node, ast.Tuple)
            and isinstance(node.ctx, ast.Load)
            and not isinstance(parents.get(node), ast.Assign)
        ):
            items = [*node.values] if isinstance(node, ast.Dict) else node.elts
            held = [i.id for i in items if isinstance(i, ast.Name) and i.id in clients]
            if held:
                yield f"{where}: client {held[0]} held in {ast.unparse(node)} is not scanned; call it by its name"


def _environ_name(node: ast.AST) -> str | None:
    """``os.environ["X"]`` / ``os.environ.get("X", ...)`` -> ``"X"``."""
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
        return node.slice.value if isinstance(node.slice, ast.Constant) else None
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.environ.get" and node.args:
        return node.args[0].value if isinstance(node.args[0], ast.Constant) else None
    return None


def _pairs(target: ast.AST, value: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    if isinstance(target, ast.Name):
        yield target.id, value
    elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        for t, v in zip(target.elts, value.elts, strict=True):
            yield from _pairs(t, v)


@dataclass(frozen=True)
class Bound:
    """What the names of one scope (its module and enclosing functions) were assigned: the
    environment variables (``x = os.environ[...]``), the f-strings and every value."""

    env: dict[str, str]
    fstrings: dict[str, ast.JoinedStr]
    values: dict[str, ast.AST]


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _calls_in_scope(tree: ast.AST) -> list[tuple[ast.Call, Bound]]:
    """Every call with the names bound where it is, as Python resolves them: its function's own
    assignments (in source order, the last one winning) and parameters hide those of enclosing
    functions and the module; a class body's names are not seen by its methods. A name assigned in
    one function says nothing of the same name in another (PlanFanOut's ``bucket`` is the
    processed bucket in ``claim``, the manifest's in ``handler``)."""
    out: list[tuple[ast.Call, Bound]] = []

    def own(scope: ast.AST) -> tuple[Bound, set[str]]:
        bound, names = Bound({}, {}, {}), set()
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            arguments = scope.args
            names |= {a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)}
            names |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a}
        pending, found = list(ast.iter_child_nodes(scope)), []
        while pending:
            node = pending.pop()
            if isinstance(node, SCOPES):
                names.add(getattr(node, "name", ""))
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                found.append(node)
            elif isinstance(node, (ast.For, ast.comprehension, ast.withitem, ast.NamedExpr, ast.AugAssign)):
                target = getattr(node, "target", None) or getattr(node, "optional_vars", None)
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)} if target else set()
            pending.extend(ast.iter_child_nodes(node))
        for node in sorted(found, key=lambda n: (n.lineno, n.col_offset)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
                for name, value in _pairs(target, node.value):
                    bound.values[name] = value
                    env = _environ_name(value)
                    if env:
                        bound.env[name] = env
                    else:
                        bound.env.pop(name, None)
                    if isinstance(value, ast.JoinedStr):
                        bound.fstrings[name] = value
                    else:
                        bound.fstrings.pop(name, None)
        return bound, names

    def visit(scope: ast.AST, outer: Bound) -> None:
        inner, names = own(scope)

        def merged(kind: str) -> dict:
            return {**{k: v for k, v in getattr(outer, kind).items() if k not in names}, **getattr(inner, kind)}

        bound = Bound(merged("env"), merged("fstrings"), merged("values"))
        pending = list(ast.iter_child_nodes(scope))
        while pending:
            node = pending.pop()
            if isinstance(node, SCOPES):
                visit(node, outer if isinstance(scope, ast.ClassDef) else bound)
                continue
            if isinstance(node, ast.Call):
                out.append((node, bound))
            pending.extend(ast.iter_child_nodes(node))

    visit(tree, Bound({}, {}, {}))
    return sorted(out, key=lambda item: (item[0].lineno, item[0].col_offset))


def _names_version(keyword: ast.keyword, bound: Bound) -> bool:
    """Whether an argument passes ``VersionId``: by name, or in a ``**`` dict (directly or through
    a name assigned in scope). S3 then needs ``s3:GetObjectVersion`` as well
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions"). Not seen:
    a key added to the dict later (``options["VersionId"] = v``, ``.update``), a ``**`` parameter
    from a caller, ``ExtraArgs`` of the transfer methods; only GetObject's extra action is modelled."""
    if keyword.arg is not None:
        return keyword.arg == "VersionId"
    value = keyword.value
    if isinstance(value, ast.Name) and value.id in bound.values:
        value = bound.values[value.id]
    return "VersionId" in ast.unparse(value)


def scan(files: list[Path]) -> list[Found]:
    """The SDK calls in ``files`` (one deployable unit: names bound to a client in one file are
    clients in the others too, as the stage runtime passes its S3 client to each stage)."""
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
    clients: dict[str, str] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    for name, value in _pairs(target, node.value):
                        service = _client_service(value)
                        if service:
                            clients[name] = service
    problems = [line for path, tree in trees.items() for line in _unfollowed(_shown(path), tree, clients)]
    if problems:
        raise IamCheckError(problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)")
    found: list[Found] = []
    for path, tree in trees.items():
        for node, bound in _calls_in_scope(tree):
            if not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in clients:
                service = clients[owner.id]
            elif _is_client_call(owner):  # boto3.client("s3").get_object(...)
                service = _literal_service(owner)
            else:
                continue
            method = node.func.attr
            where = f"{_shown(path)}:{node.lineno}"
            if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                method = node.args[0].value
            elif method in NOT_CALLS:
                continue
            operation = (
                TRANSFERS.get(method) if service == "s3" and method in TRANSFERS else _operations(service).get(method)
            )
            if operation is None:
                raise IamCheckError(f"{where}: {ast.unparse(node.func)} is no {service} API operation botocore knows")
            env_of, fstrings = bound.env, bound.fstrings
            env_arg = None
            args: dict[str, str | None] = {}
            for keyword in node.keywords:
                name = _environ_name(keyword.value)
                if name is None and isinstance(keyword.value, ast.Name):
                    name = env_of.get(keyword.value.id)
                if name and keyword.arg not in ("Value", "Body"):
                    env_arg = name
                args[keyword.arg] = name
                if keyword.arg == "Key":
                    args["Key"] = _key_prefix_env(keyword.value, env_of, fstrings)
            versioned = any(_names_version(k, bound) for k in node.keywords)
            found.append(Found(service, operation, where, env_arg, args.get("Bucket"), args.get("Key"), versioned))
    return found


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _key_prefix_env(node: ast.AST, env_of: dict[str, str], fstrings: dict[str, ast.JoinedStr]) -> str | None:
    """The variable an S3 key starts with: ``f"{source}/..."`` (directly or through a name)."""
    if isinstance(node, ast.Name):
        node = fstrings.get(node.id, node)
    if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
        return None
    first, second = node.values[0], node.values[1]
    if not (isinstance(first, ast.FormattedValue) and isinstance(second, ast.Constant)):
        return None
    if not str(second.value).startswith("/"):
        return None
    value = first.value
    return _environ_name(value) or (env_of.get(value.id) if isinstance(value, ast.Name) else None)


@dataclass(frozen=True)
class Unit:
    """One deployed piece of code: its role, its environment and the step it runs (if any)."""

    name: str
    role: str
    env: dict[str, str]
    files: tuple[Path, ...]
    step: Step | None


def _python_files(*folders: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for folder in folders for p in folder.glob("*.py")))


def _with_imported(own: tuple[Path, ...], shared: Path) -> tuple[Path, ...]:
    """``own`` and the modules of ``shared`` they import, transitively: every zip carries all of
    ``lambda_src/_shared``, but only what a function imports runs (and names its clients)."""
    available = {p.stem: p for p in shared.glob("*.py")}
    files, pending = set(own), list(own)
    while pending:
        for node in ast.walk(ast.parse(pending.pop().read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found = available.get(name.split(".")[0])
                if found and found not in files:
                    files.add(found)
                    pending.append(found)
    return tuple(sorted(files))


def units(config: Config, spec: PipelineSpec, root: Path = REPO) -> Iterator[Unit]:
    steps = {step.name: step for step in spec.steps}
    for _, body in config.resources("aws_lambda_function"):
        folder = Path(body.get("filename", "")).stem
        if not (root / "lambda_src" / folder).is_dir():
            raise IamCheckError(f"function {body['function_name']}: no lambda_src/{folder}/ for its code")
        env = config.resolve((body.get("environment") or {}).get("variables", {}))
        files = _with_imported(_python_files(root / "lambda_src" / folder), root / "lambda_src" / "_shared")
        yield Unit(config.resolve(body["function_name"]), config.resolve(body["role"]), env, files, steps.get(folder))
    for _, body in config.resources("aws_batch_job_definition"):
        props = json.loads(config.resolve(body.get("container_properties") or "{}"))
        env = {item["name"]: item["value"] for item in props.get("environment", [])}
        stage = env.get("STAGE", "")
        if not (root / "images" / stage).is_dir():
            raise IamCheckError(f"job definition {body['name']}: no images/{stage}/ for its STAGE")
        files = _python_files(root / "images" / stage, root / "images" / "runtime")
        yield Unit(config.resolve(body["name"]), props["jobRoleArn"], env, files, steps.get(stage))


def _arn_pattern(fmt: str) -> re.Pattern:
    parts = re.split(r"\$\{\w+\}", fmt)
    return re.compile("^" + "[^ ]+?".join(re.escape(p) for p in parts) + "$")


# Resources the code gets from a list call on one the unit names, never from its environment: an
# execution of its state machine (ListExecutions) and a job on its queues (ListJobs; a Batch job's
# ARN carries no queue, so any job of the account and region).
DERIVED = (
    (":stateMachine:", lambda arn: arn.replace(":stateMachine:", ":execution:", 1) + ":*"),
    (":job-queue/", lambda arn: arn.split(":job-queue/", 1)[0] + ":job/*"),
)


def unit_calls(config: Config, unit: Unit, found: list[Found]) -> Iterator[Call]:
    by_name = config.arns_by_name()
    tokens = [t for value in unit.env.values() for t in re.split(r"[,=\s]", value) if t]
    for call in found:
        action = sdk_action(call.service, call.operation)
        where = f"{unit.name}: {call.where}"
        if call.service == "s3":
            yield from s3_calls(unit, call, action, where)
            continue
        formats = resource_formats(action)
        if not formats:
            yield Call.of(unit.role, action, "*", where)
            continue
        # An action may take several resource types, the required one first (UpdateJobQueue: a job
        # queue, a compute environment only when the order changes): the first type the unit names
        # (ListExecutions: a map run or a state machine), else one derived from those it names.
        given = [unit.env[call.env_arg]] if call.env_arg in unit.env else tokens
        named = {by_name.get(t, t) for t in given}
        derived = {make(arn) for arn in named for marker, make in DERIVED if marker in arn}
        resources = next(
            (
                found
                for candidates in (named, derived)
                for pattern in map(_arn_pattern, formats)
                for found in [sorted(arn for arn in candidates if pattern.match(arn))]
                if found
            ),
            [],
        )
        if not resources:
            raise IamCheckError(
                f"{where}: {action} names no resource of the form {formats[0]} in {unit.name}'s environment"
            )
        for resource in resources:
            yield Call.of(unit.role, action, resource, where)


def s3_calls(unit: Unit, call: Found, action: str, where: str) -> Iterator[Call]:
    """The bucket and key prefix the code names (from its environment), else the step's data; a
    GetObject of a version is also checked as ``s3:GetObjectVersion``."""
    yield from _s3_calls(unit, call, action, where)
    if call.versioned and action == "s3:GetObject":
        yield from _s3_calls(unit, call, "s3:GetObjectVersion", f"{where} (VersionId)")


def _s3_calls(unit: Unit, call: Found, action: str, where: str) -> Iterator[Call]:
    if call.bucket_env in unit.env and call.key_env in unit.env:
        bucket, prefix = unit.env[call.bucket_env], unit.env[call.key_env]
        yield Call.of(unit.role, action, f"arn:aws:s3:::{bucket}/{prefix}/*", where)
        return
    step = unit.step
    if step is None:
        raise IamCheckError(f"{where}: S3 {call.operation} in code that runs no step of conf/pipeline.py")
    # a cache the step keeps across executions is read and written as well (its keys are built at run time)
    cache = (step.cache,) if step.cache else ()
    if call.operation in S3_LIST_OPS:
        locations = step.reads
    elif call.operation in S3_READ_OPS:
        locations = (*step.reads, *cache)
    elif call.operation in S3_WRITE_OPS:
        locations = ((step.writes,) if step.writes else ()) + cache
    else:
        raise IamCheckError(f"{where}: S3 {call.operation} is neither a read nor a write of the step's data")
    for location in locations:
        variable = f"{location.bucket.upper()}_BUCKET"
        bucket = unit.env.get(variable)
        if not bucket:
            raise IamCheckError(f"{where}: {unit.name} reads/writes {location} but its environment has no {variable}")
        if call.operation in S3_LIST_OPS:
            yield Call.of(unit.role, action, f"arn:aws:s3:::{bucket}", where, **{"s3:prefix": f"{location.prefix}/"})
        else:
            yield Call.of(unit.role, action, f"arn:aws:s3:::{bucket}/{location.prefix}/*", where)


def dynamic_values(config: Config, spec: PipelineSpec) -> dict[str, list[str]]:
    """The JSONPath parameters of the state machine: each Map job's queue is one the Route's Pass
    states set (``$.queue``); the Map reads the shard list the ``writes_shards`` step writes."""
    out: dict[str, list[str]] = {}
    for _, body in config.resources("aws_sfn_state_machine"):
        definition = json.loads(config.resolve(body["definition"]))
        queues: set[str] = set()
        states: list[tuple[str, dict]] = []
        pending = [definition.get("States", {})]
        while pending:
            for name, state in pending.pop().items():
                states.append((name, state))
                result = state.get("Result")
                if state.get("Type") == "Pass" and isinstance(result, dict) and "queue" in result:
                    queues.add(result["queue"])
                pending.append((state.get("ItemProcessor") or {}).get("States", {}))
        shards = spec.sharder
        for name, state in states:
            if "JobQueue.$" in (state.get("Parameters") or {}):
                out[f"{name}.JobQueue"] = sorted(queues)
            if "Key.$" in ((state.get("ItemReader") or {}).get("Parameters") or {}) and shards and shards.writes:
                out[f"{name}.Key"] = [f"{shards.writes.prefix}/*"]
    return out


def discover(config: Config, spec: PipelineSpec = PIPELINE, root: Path = REPO) -> list[Call]:
    out: list[Call] = []
    for unit in units(config, spec, root):
        out.extend(unit_calls(config, unit, scan(list(unit.files))))
    return out


def run_check(config: Config, spec: PipelineSpec = PIPELINE, root: Path = REPO):
    return check(config, discover(config, spec, root), dynamic_values(config, spec))


def load(stack: Path) -> Config:
    """A pipeline stack's config, with its account's state-bootstrap stack beside it (which owns
    the permissions boundary) when that was synthesized too."""
    config = json.loads((stack / "cdk.tf.json").read_text())
    accounts = {a for p in config.get("provider", {}).get("aws", []) for a in p.get("allowed_account_ids", [])}
    others = [stack.parent / f"state-bootstrap-{a}" / "cdk.tf.json" for a in sorted(accounts)]
    return Config([config, *(json.loads(o.read_text()) for o in others if o.is_file())])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="every AWS call of the pipeline's code against its IAM")
    parser.add_argument("stacks", type=Path, help="the synthesized stacks folder (cdktf.out/stacks)")
    parser.add_argument("envs", nargs="*", help="environments to check (default: every pipeline-<env> there)")
    parser.add_argument("--quiet-unused", action="store_true", help="count the unused grants, do not list them")
    parser.add_argument("--every", action="store_true", help="list every call with its verdict, not only the denied")
    args = parser.parse_args(argv)
    envs = args.envs or sorted(d.name.removeprefix("pipeline-") for d in args.stacks.glob("pipeline-*"))
    status = 0
    for env in envs:
        stack = args.stacks / f"pipeline-{env}"
        if cli.missing_stack(stack):
            return 2
        print(f"== pipeline-{env}")
        try:
            verdicts, unused = run_check(load(stack))
        except IamCheckError as exc:
            print(f"error: pipeline-{env}: {exc}", file=sys.stderr)
            return 2
        shown = [] if args.quiet_unused else unused
        status = max(status, report(verdicts, shown, unused_count=len(unused), every=args.every))
    return status


if __name__ == "__main__":
    cli.run(main)
