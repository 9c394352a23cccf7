"""``make docs``: the architecture, data-flow, security and cost diagrams, drawn from a synthesized
stack (``cdk.tf.json``), never by hand.

Reads only the Terraform JSON: references (``${aws_x.y.attr}``) are the wiring, the roles' policy
documents say what reads and writes which bucket prefix and what each role may do, the KMS key
references say what each key encrypts, and the dated price table (``conf/prices``) with
PlanFanOut's inputs say what costs money idle and per run. Specific to this pipeline where it
names its conventions (the ``FAN_OUT`` of the planning function). Writes ``<name>.dot`` (the
source, compared by ``tests/test_docs.py``: a stale diagram fails) and ``<name>.svg`` +
``<name>.png`` rendered by Graphviz's ``dot``; each SVG carries the SHA-256 of its source.

    python -m pipeline_ops.diagrams cdktf.out/stacks/pipeline-prod/cdk.tf.json --out docs/diagrams [--render]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import graphviz

from pipeline_ops import cost
from tools import cli
from tools.plan_review import monthly_cost

REPO = Path(__file__).resolve().parent.parent
PRICES = REPO / "conf" / "prices"
REF = re.compile(r"\$\{(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)")
NAMES = ("name", "bucket", "function_name", "compute_environment_name", "alarm_name", "dashboard_name", "budget_name")
ARCHITECTURE = {  # type -> (group, shape)
    "aws_sfn_state_machine": ("Orchestration", "component"),
    "aws_cloudwatch_event_rule": ("Orchestration", "cds"),
    "aws_lambda_function": ("Compute", "box"),
    "aws_batch_job_queue": ("Compute", "parallelogram"),
    "aws_batch_compute_environment": ("Compute", "box3d"),
    "aws_batch_job_definition": ("Compute", "note"),
    "aws_ecr_repository": ("Compute", "folder"),
    "aws_s3_bucket": ("Storage", "cylinder"),
    "aws_sqs_queue": ("Storage", "cylinder"),
    "aws_ssm_parameter": ("Storage", "note"),
    "aws_sns_topic": ("Alerting and cost", "cds"),
    "aws_budgets_budget": ("Alerting and cost", "octagon"),
    "aws_ce_anomaly_monitor": ("Alerting and cost", "octagon"),
    "aws_cloudwatch_dashboard": ("Alerting and cost", "tab"),
    "aws_vpc": ("Network", "box"),
    "aws_subnet": ("Network", "box"),
    "aws_nat_gateway": ("Network", "box"),
    "aws_vpc_endpoint": ("Network", "ellipse"),
}
# Resources that only connect two others: drawn as the edge between them (from -> to attribute).
CONNECTORS = {
    "aws_cloudwatch_event_target": ("rule", "arn"),
    "aws_sns_topic_subscription": ("topic_arn", "endpoint"),
    "aws_lambda_event_source_mapping": ("event_source_arn", "function_name"),
}
PERIODS = {"DAILY": "day", "MONTHLY": "month", "QUARTERLY": "quarter", "ANNUALLY": "year"}
ENCRYPTION_FIELDS = ("kms_key_id", "kms_master_key_id", "kms_key_arn", "key_id")


class Stack:
    """A synthesized stack's resources, their readable names and their references."""

    def __init__(self, config: dict) -> None:
        self.resources = {
            f"{type_}.{name}": values
            for type_, items in (config.get("resource") or {}).items()
            for name, values in items.items()
        }

    def of(self, type_: str) -> list[str]:
        return sorted(a for a in self.resources if a.startswith(f"{type_}."))

    def label(self, address: str) -> str:
        values = self.resources[address]
        for key in NAMES:
            value = values.get(key)
            if isinstance(value, str) and value and "${" not in value:
                return value
        if address.startswith("aws_vpc_endpoint."):
            return str(values.get("service_name", "")).rsplit(".", 1)[-1] + " endpoint"
        path = values.get("//", {}).get("metadata", {}).get("path", address)
        return "/".join(path.split("/")[1:]) or address

    def refs(self, value: object) -> list[str]:
        """Resources ``value`` refers to, in order of first mention, present in this stack."""
        found = []
        for match in REF.finditer(json.dumps(value)):
            address = f"{match.group(1)}.{match.group(2)}"
            if address in self.resources and address not in found:
                found.append(address)
        return found


def connections(stack: Stack) -> list[tuple[str, str, str]]:
    """(from, to, connector type) for every resource that only connects two others (CONNECTORS)."""
    found = []
    for type_, (source, target) in CONNECTORS.items():
        for address in stack.of(type_):
            values = stack.resources[address]
            froms, tos = stack.refs(values.get(source)), stack.refs(values.get(target))
            if froms and tos:
                found.append((froms[0], tos[0], type_))
    return found


def node_id(address: str) -> str:
    return address.replace(".", "__").replace("-", "_")


def new_graph(name: str, title: str, rankdir: str = "LR") -> graphviz.Digraph:
    graph = graphviz.Digraph(name, graph_attr={"rankdir": rankdir, "label": title, "labelloc": "t", "fontsize": "18"})
    graph.attr("node", fontname="Helvetica", fontsize="10")
    graph.attr("edge", fontname="Helvetica", fontsize="8")
    return graph


ROLE_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "mistyrose"}
KEY_STYLE = {"shape": "hexagon", "style": "filled", "fillcolor": "lightblue"}


def legend(graph: graphviz.Digraph, nodes: list[tuple[str, dict, str]], edges: list[tuple[str, str]]) -> None:
    """A boxed legend: each node shape and edge style the diagram uses, and what it means."""
    with graph.subgraph(name="cluster_legend") as box:
        box.attr(label="Legend", style="rounded,dashed", color="grey50", fontsize="10")
        for index, (shape, style, text) in enumerate(nodes):
            box.node(f"legend_node_{index}", text, **{"shape": shape, **style, "fontsize": "8"})
        for index, (style, text) in enumerate(edges):
            box.node(f"legend_from_{index}", "", shape="point", width="0.05")
            box.node(f"legend_to_{index}", "", shape="point", width="0.05")
            box.edge(f"legend_from_{index}", f"legend_to_{index}", label=text, style=style)


# The README's picture: one box per kind of resource (how many, of what), wired where any resource of
# one kind references one of another. Type -> (box, shape); types not listed are left out.
OVERVIEW = {
    "aws_cloudwatch_event_rule": ("EventBridge rules", "cds"),
    "aws_sfn_state_machine": ("Step Functions workflow", "component"),
    "aws_lambda_function": ("Lambda functions", "box"),
    "aws_batch_job_queue": ("Batch job queues", "parallelogram"),
    "aws_batch_compute_environment": ("Batch compute (GPU spot, CPU)", "box3d"),
    "aws_batch_job_definition": ("Batch stage jobs", "note"),
    "aws_ecr_repository": ("ECR stage images", "folder"),
    "aws_s3_bucket": ("S3 data lake", "cylinder"),
    "aws_kms_key": ("KMS key", "hexagon"),
    "aws_sns_topic": ("SNS alert topic", "cds"),
    "aws_cloudwatch_metric_alarm": ("CloudWatch alarms", "octagon"),
    "aws_budgets_budget": ("Budget + shutdown", "octagon"),
    "aws_ssm_parameter": ("SSM parameters (kill switch)", "note"),
    "aws_vpc": ("VPC (subnets, security groups, endpoints)", "box"),
    "aws_subnet": ("VPC (subnets, security groups, endpoints)", "box"),
    "aws_security_group": ("VPC (subnets, security groups, endpoints)", "box"),
    "aws_vpc_endpoint": ("VPC (subnets, security groups, endpoints)", "box"),
}


def overview(stack: Stack) -> graphviz.Digraph:
    """About a dozen boxes: each kind of resource with its count and names, and which kinds wire to which."""
    graph = new_graph("overview", "Odins Ravne pipeline: what is deployed and how it is wired (KMS key: encrypts all)")
    boxes: dict[str, list[str]] = defaultdict(list)
    for type_, (title, _) in OVERVIEW.items():
        boxes[title] += stack.of(type_)
    shapes = {title: shape for title, shape in OVERVIEW.values()}
    box_of = {a: title for title, addresses in boxes.items() for a in addresses}
    for title, addresses in boxes.items():
        if not addresses:
            continue
        names = sorted({stack.label(a).removeprefix(_prefix(stack)) for a in addresses if not a.startswith("aws_vpc")})
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        graph.node(
            node_id(title), f"{title} ({len(addresses)})" + (f"\\n{shown}" if shown else ""), shape=shapes[title]
        )
    edges = set()
    for address, title in box_of.items():
        for target in stack.refs({k: v for k, v in stack.resources[address].items() if k != "//"}):
            other = box_of.get(target)
            if other and other != title and not target.startswith("aws_kms_key."):
                edges.add((title, other, "uses"))
    for source, target, _ in connections(stack):
        if source in box_of and target in box_of:
            edges.add((box_of[source], box_of[target], "triggers"))
    for source, target, verb in sorted(edges):
        style = {"style": "bold", "color": "darkorange"} if verb == "triggers" else {}
        graph.edge(node_id(source), node_id(target), **style)
    legend(
        graph,
        [("box", {}, "a kind of resource (count)\\nand some of its names")],
        [("solid", "references (by name or ARN)"), ("bold", "an event triggers its target")],
    )
    return graph


def _prefix(stack: Stack) -> str:
    """``odins-ravne-<env>-`` of this stack's names (from its state machine), to keep labels short."""
    machines = stack.of("aws_sfn_state_machine")
    name = stack.label(machines[0]) if machines else ""
    return name.rsplit("-", 1)[0] + "-" if "-" in name else ""


def architecture(stack: Stack) -> graphviz.Digraph:
    """Main resources by concern, and their wiring: direct references and connecting resources."""
    graph = new_graph("architecture", "Architecture: resources and their wiring")
    main = [a for type_ in ARCHITECTURE for a in stack.of(type_)]
    groups = defaultdict(list)
    for address in main:
        groups[ARCHITECTURE[address.split(".")[0]][0]].append(address)
    for index, (group, members) in enumerate(sorted(groups.items())):
        with graph.subgraph(name=f"cluster_{index}") as cluster:
            cluster.attr(label=group, style="rounded", color="grey60")
            for address in members:
                shape = ARCHITECTURE[address.split(".")[0]][1]
                cluster.node(node_id(address), stack.label(address), shape=shape)
    edges = set()
    for address in main:
        if address.startswith("aws_cloudwatch_dashboard."):  # it shows everything; wiring it is noise
            continue
        for target in stack.refs({k: v for k, v in stack.resources[address].items() if k != "//"}):
            if target in main and target != address:
                edges.add((address, target, ""))
    for source, target, type_ in connections(stack):
        if source in main and target in main:
            edges.add((source, target, type_.removeprefix("aws_").replace("_", " ")))
    for source, target, label in sorted(edges):
        graph.edge(node_id(source), node_id(target), label=label)
    kinds = defaultdict(list)
    for type_, (_, shape) in ARCHITECTURE.items():
        kinds[shape].append(type_.removeprefix("aws_").replace("_", " "))
    legend(
        graph,
        [(shape, {}, "\\n".join(names)) for shape, names in kinds.items()],
        [("solid", "references (unlabelled) or connects (labelled: event target, subscription)")],
    )
    return graph


def statements(stack: Stack) -> dict[str, list[dict]]:
    """Role address -> the statements of its inline policies."""
    found = defaultdict(list)
    for address in stack.of("aws_iam_role_policy"):
        values = stack.resources[address]
        roles = [r for r in stack.refs(values.get("role")) if r.startswith("aws_iam_role.")]
        document = json.loads(values.get("policy") or "{}")
        for role in roles:
            found[role] += document.get("Statement", [])
    return found


def principals(stack: Stack) -> dict[str, str]:
    """Role address -> what assumes it (a function, a job definition, or the trusted service)."""
    owners = {}
    for address in stack.of("aws_lambda_function"):
        for role in stack.refs(stack.resources[address].get("role")):
            owners[role] = address
    for address in stack.of("aws_batch_job_definition"):
        container = json.loads(stack.resources[address].get("container_properties") or "{}")
        for role in stack.refs(container.get("jobRoleArn")):
            owners[role] = address
    return owners


def prefix_of(resource: str) -> tuple[str, str] | None:
    """``${aws_s3_bucket.x.arn}/a/b/*`` -> (bucket address, ``a/b``)."""
    match = re.match(r"\$\{(aws_s3_bucket\.[A-Za-z0-9_-]+)\.arn\}/(.*)$", resource)
    if not match:
        return None
    return match.group(1), match.group(2).rstrip("*").rstrip("/") or "(whole bucket)"


def dataflow(stack: Stack) -> graphviz.Digraph:
    """Which step reads and writes which bucket prefix: from the grants of each step's role."""
    graph = new_graph("dataflow", "Data flow: bucket prefixes each step reads and writes (from its role's grants)")
    owners, flows = principals(stack), set()
    for role, found in statements(stack).items():
        owner = owners.get(role)
        if owner is None:
            continue
        for statement in found:
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            for resource in resources:
                located = prefix_of(resource)
                if located is None:
                    continue
                if "s3:GetObject" in actions:
                    flows.add((located, owner, "read"))
                if "s3:PutObject" in actions:
                    flows.add((owner, located, "write"))
    prefixes = sorted({x for flow in flows for x in flow[:2] if isinstance(x, tuple)})
    buckets = defaultdict(list)
    for bucket, prefix in prefixes:
        buckets[bucket].append(prefix)
    for index, (bucket, members) in enumerate(sorted(buckets.items())):
        with graph.subgraph(name=f"cluster_{index}") as cluster:
            cluster.attr(label=f"s3://{stack.label(bucket)}", style="rounded", color="grey60")
            for prefix in members:
                cluster.node(f"{node_id(bucket)}__{node_id(prefix)}", f"{prefix}/", shape="folder")
    for owner in sorted({x for flow in flows for x in flow[:2] if isinstance(x, str)}):
        shape = "box3d" if owner.startswith("aws_batch") else "box"
        graph.node(node_id(owner), stack.label(owner), shape=shape, style="filled", fillcolor="lightyellow")

    def name(end: object) -> str:
        return f"{node_id(end[0])}__{node_id(end[1])}" if isinstance(end, tuple) else node_id(str(end))

    for source, target, verb in sorted(flows, key=lambda f: (name(f[0]), name(f[1]))):
        graph.edge(name(source), name(target), label=verb, color="darkgreen" if verb == "write" else "navy")
    legend(
        graph,
        [
            ("folder", {}, "bucket prefix"),
            ("box", {"style": "filled", "fillcolor": "lightyellow"}, "function or Batch job"),
        ],
        [("solid", "read (navy: s3:GetObject) / write (green: s3:PutObject)")],
    )
    return graph


def _actions(found: list[dict]) -> str:
    names = sorted({a for s in found for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    services = defaultdict(list)
    for action in names:
        service, _, verb = action.partition(":")
        services[service].append(verb)
    return "\\n".join(f"{s}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}" for s, v in sorted(services.items()))


def security_iam(stack: Stack) -> graphviz.Digraph:
    """Roles: who assumes each, and what it may do on which resource (its inline grants)."""
    graph = new_graph("security-iam", "Security, IAM: each role, who assumes it, what it may do on what")
    owners = principals(stack)
    for role in stack.of("aws_iam_role"):
        values = stack.resources[role]
        trust = json.loads(values.get("assume_role_policy") or "{}")
        services = sorted(
            {
                p
                for s in trust.get("Statement", [])
                for p in ([s["Principal"].get("Service")] if isinstance(s.get("Principal"), dict) else [])
                if isinstance(p, str)
            }
        )
        who = stack.label(owners[role]) if role in owners else ", ".join(services) or "federated (CI)"
        graph.node(node_id(role), f"{stack.label(role)}\\nassumed by {who}", **ROLE_STYLE)
    for role, found in sorted(statements(stack).items()):
        by_target = defaultdict(list)
        for statement in found:
            resources = statement.get("Resource", [])
            for resource in [resources] if isinstance(resources, str) else resources:
                targets = stack.refs(resource) or (["*"] if resource == "*" else [])
                for target in targets[:1]:
                    by_target[target].append(statement)
        for target, granted in sorted(by_target.items()):
            if target == "*":
                graph.node("any_resource", "* (APIs without resource-level permissions)", shape="plaintext")
                graph.edge(node_id(role), "any_resource", label=_actions(granted), style="dashed")
                continue
            graph.node(node_id(target), stack.label(target), shape="ellipse")
            graph.edge(node_id(role), node_id(target), label=_actions(granted))
    legend(
        graph,
        [("box", ROLE_STYLE, "IAM role (assumed by)"), ("ellipse", {}, "resource it may act on")],
        [("solid", "actions granted on that resource"), ("dashed", "actions AWS does not scope (Resource *)")],
    )
    return graph


def security_encryption(stack: Stack) -> graphviz.Digraph:
    """KMS keys and what each encrypts (every reference from an encryption field)."""
    graph = new_graph("security-encryption", "Security, encryption: each KMS key and what it encrypts")
    for key in stack.of("aws_kms_key"):
        description = stack.resources[key].get("description", "")
        graph.node(node_id(key), f"KMS key\\n{description}", **KEY_STYLE)
        for address, values in sorted(stack.resources.items()):
            fields = {k: values[k] for k in values if k in ENCRYPTION_FIELDS} | {
                k: values[k] for k in ("rule",) if k in values and address.startswith("aws_s3_bucket_server_side")
            }
            if key in stack.refs(fields):
                encrypted = next((r for r in stack.refs(values) if r.startswith("aws_s3_bucket.")), address)
                kind = encrypted.split(".")[0].removeprefix("aws_").replace("_", " ")
                graph.node(node_id(encrypted), f"{stack.label(encrypted)}\\n({kind})", shape="ellipse")
                graph.edge(node_id(key), node_id(encrypted), label="encrypts", color="steelblue", style="dotted")
    legend(
        graph,
        [("hexagon", KEY_STYLE, "KMS key (customer managed)"), ("ellipse", {}, "encrypted resource")],
        [("dotted", "the resource names the key (SSE-KMS, kms_key_id, ...)")],
    )
    return graph


def security_network(stack: Stack) -> graphviz.Digraph:
    """The VPC: subnets, security groups, endpoints, and where Batch runs."""
    graph = new_graph("security-network", "Security, network: where compute runs, no inbound path")
    with graph.subgraph(name="cluster_network") as network:
        network.attr(label="VPC: private subnets, no inbound", style="rounded", color="grey40")
        for address in stack.of("aws_subnet") + stack.of("aws_security_group") + stack.of("aws_vpc_endpoint"):
            values = stack.resources[address]
            kind = "public" if values.get("map_public_ip_on_launch") else "subnet"
            if address.startswith("aws_security_group."):
                kind = "security group"
            text = stack.label(address) if "endpoint" in address else f"{stack.label(address)}\\n({kind})"
            network.node(node_id(address), text, shape="box")
        for environment in stack.of("aws_batch_compute_environment"):
            network.node(node_id(environment), stack.label(environment), shape="box3d")
            for target in stack.refs(stack.resources[environment].get("compute_resources")):
                if target.startswith(("aws_subnet.", "aws_security_group.")):
                    network.edge(node_id(environment), node_id(target), label="runs in")
    legend(
        graph,
        [("box", {}, "subnet, security group or VPC endpoint"), ("box3d", {}, "Batch compute environment")],
        [("solid", "runs in")],
    )
    return graph


def region_prices(config: dict) -> tuple[str, dict]:
    """The region of the config's default provider and its dated price table."""
    region = next(iter((config.get("provider") or {}).get("aws") or [{}])).get("region", "eu-north-1")
    return region, json.loads((PRICES / f"{region}.json").read_text())


def idle_costs(stack: Stack, prices: dict) -> dict[str, float]:
    """USD per month of what costs money while idle, by kind of resource (the plan review's prices)."""
    idle: dict[str, float] = defaultdict(float)
    for address, values in stack.resources.items():
        priced = monthly_cost(address.split(".")[0], values, {}, prices)
        if priced:
            idle[address.split(".")[0].removeprefix("aws_").replace("_", " ")] += priced[0]
    return idle


def cost_graph(stack: Stack, config: dict) -> graphviz.Digraph:
    """What costs money while idle (from the price table) and per run (PlanFanOut's inputs)."""
    region, prices = region_prices(config)
    graph = new_graph("cost", f"Cost: idle per month and per run ({region} price table of {prices['date']})", "TB")
    idle = idle_costs(stack, prices)
    graph.node("idle", f"idle: {sum(idle.values()):.2f} USD/month\\n(fixed-price resources)", shape="doubleoctagon")
    for kind, usd in sorted(idle.items(), key=lambda kv: -kv[1]):
        graph.node(f"idle_{node_id(kind)}", f"{kind}\\n{usd:.2f} USD/month", shape="box")
        graph.edge("idle", f"idle_{node_id(kind)}")
    fan_out = cost.fan_out_of(config)
    if fan_out:
        figures = cost.estimate(fan_out, cost.DEFAULT_IMAGES)
        graph.node(
            "run",
            f"per 1,000 images: {figures['usd_per_1000_images']:.4f} USD spot\\n"
            f"({figures['usd_per_1000_images_on_demand']:.4f} on-demand); {figures['images']:,} images: "
            f"{figures['estimated_usd']:.2f} USD, ~{figures['estimated_seconds'] / 3600:.1f} h",
            shape="doubleoctagon",
        )
        for step in fan_out["steps"]:
            graph.node(
                f"step_{step['name']}",
                f"{step['name']} ({'per shard' if step['per_shard'] else 'once'})\\n"
                f"{step['images_per_second']:g} images/s, {step['usd_per_hour']:.4f} USD/job-hour spot",
                shape="box3d",
            )
            graph.edge("run", f"step_{step['name']}")
    for budget in stack.of("aws_budgets_budget"):
        values = stack.resources[budget]
        graph.node(
            node_id(budget),
            f"budget {stack.label(budget)}\\n{values.get('limit_amount')} {values.get('limit_unit', 'USD')} "
            f"a {PERIODS.get(str(values.get('time_unit')), 'period')}; shutdown at 100 %",
            shape="octagon",
            style="filled",
            fillcolor="lightyellow",
        )
    legend(
        graph,
        [("doubleoctagon", {}, "total (idle per month, or per run)"), ("box", {}, "what it is made of")],
        [("solid", "part of")],
    )
    return graph


def diagrams(config: dict) -> dict[str, str]:
    """Name -> DOT source of every diagram."""
    stack = Stack(config)
    graphs = [
        overview(stack),
        architecture(stack),
        dataflow(stack),
        security_iam(stack),
        security_encryption(stack),
        security_network(stack),
        cost_graph(stack, config),
    ]
    return {g.name: g.source for g in graphs}


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def render(name: str, source: str, out: Path) -> None:
    """``dot`` -> SVG (stamped with the source's SHA-256) and PNG."""
    svg = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, check=True).stdout.decode()
    head, _, rest = svg.partition("\n")
    (out / f"{name}.svg").write_text(f"{head}\n<!-- source sha256: {source_hash(source)} -->\n{rest}")
    png = subprocess.run(["dot", "-Tpng", "-Gdpi=80"], input=source.encode(), capture_output=True, check=True).stdout
    (out / f"{name}.png").write_bytes(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.diagrams", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="a synthesized cdk.tf.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "diagrams")
    parser.add_argument("--render", action="store_true", help="also render SVG and PNG with Graphviz's dot")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        print(f"error: {args.config} not found; run `make synth` first", file=sys.stderr)
        return 1
    if args.render and shutil.which("dot") is None:
        print("error: Graphviz's dot is not installed: apt-get install graphviz (Debian/Ubuntu)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, source in diagrams(json.loads(args.config.read_text())).items():
        (args.out / f"{name}.dot").write_text(source)
        if args.render:
            render(name, source, args.out)
        print(f"docs: {args.out / name}.dot{' .svg .png' if args.render else ''}")
    return 0


if __name__ == "__main__":
    cli.run(main)
