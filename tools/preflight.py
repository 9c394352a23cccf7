"""Cloud preflight: prove on the synthesized config what the local emulator cannot see.

    python -m tools.preflight cdktf.out/stacks/pipeline-prod [more stack folders or cdk.tf.json ...]

Reads synthesized Terraform JSON only (no construct import, no AWS call) and works on any stack of
this shape. One line per finding (``FAIL <check> <address>: <what is wrong>; <what to do>``), exit
1 on any finding. The checks:

- reachability: every place compute runs (Batch compute environments, Lambdas in a VPC) reaches
  each AWS service it needs, through a NAT/internet route or a VPC endpoint of that service (a
  gateway endpoint on its route table; an interface endpoint in its subnets with private DNS, its
  security group admitting 443 from the workload, the workload's egress allowing it). The needed
  services: what the ECS agent and image pulls need on every Batch instance (``BATCH_NEEDS``),
  plus what a resource declares in its ``"//": {"needs_services": [...]}`` (ignored by Terraform);
- cost: what the budget's tag filter and the anomaly monitor select on is carried by the
  provider's default tags, each Batch compute environment's ``compute_resources.tags`` and the
  ``tag_specifications`` of its launch template (instances, volumes, network interfaces);
- alerts (cloud stacks only; an emulator stack is exempt): every alarm action, budget
  notification, anomaly subscription, EventBridge target and workflow failure notice ends at a
  human (e-mail, https, SMS or chat), and the topic's KMS key lets each publishing service use it;
- placement: the first compute environment of each queue a job is submitted to (read from the
  state machines) has an instance type that fits the job, of the right class: a CPU job never
  reaches a GPU environment, a GPU job starts on a GPU one;
- workflow: the ASL contract of every state machine (``tools/asl_contract.py``): what each Lambda
  state selects is in its function's declared answer, answers are bounded, retriers are ordered
  specific-first, every Fail state is notified;
- images: each job definition runs an image of an ECR repository this stack creates, with a
  fixed tag, built from a Dockerfile under the images folder (``--images``, default ``images/``;
  layout in ``tools/image_builds.py``);
- placeholders (cloud stacks, with ``--refuse-placeholders``: what ``make deploy-aws`` and a
  single cloud env's ``make preflight ENV=<env>`` run): no alert address on a reserved domain
  (example.org/.com/.net, *.example, *.invalid, *.test, localhost; RFC 2606, RFC 6761) and no
  documentation account id (12 equal digits, 123456789012); one line per stack naming them and
  where to set real ones. Without the flag they are listed as notes.
- budgets: each budget is one Budgets accepts for its time unit (no FORECASTED notification on a
  DAILY budget, at most 10 notifications, one SNS and 10 e-mail subscribers each), and a tag
  filter selects by one tag value (values of one ``TagKeyValue`` filter are ORed).

- the general AWS rules of ``tools/preflight_rules.py`` (``RULES``: policy documents, key and topic
  policies for the services that use them, dashboards, names, ranges, Step Functions, Batch, S3 data,
  endpoint policies, service roles), each named in ``docs/aws-contract.md``.

What it cannot prove: service quotas (``tools/quotas.py`` reads them before ``make deploy-aws``'s
plan), spot capacity, the contents of images, IAM at runtime.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import asl_contract, cli
from tools.image_builds import dockerfile_for
from tools.preflight_rules import RULES, Finding, as_list, first, publishers

REPO = Path(__file__).resolve().parent.parent
PRICES = REPO / "conf" / "prices"  # dated instance sizes and prices, one table per region
IMAGES = REPO / "images"
# Every Batch (ECS) instance: the ECS agent, image pulls (ECR API, registry, layers in S3), awslogs.
BATCH_NEEDS = ("ecs", "ecs-agent", "ecs-telemetry", "ecr.api", "ecr.dkr", "s3", "logs")
GATEWAY_SERVICES = {"s3", "dynamodb"}
HUMAN_PROTOCOLS = {"email", "email-json", "https", "sms"}
CHAT_TYPES = ("aws_chatbot_slack_channel_configuration", "aws_chatbot_teams_channel_configuration")
LAUNCH_TAGGED = ("instance", "volume", "network-interface")
ECS_RESERVED_MIB = 512  # memory the ECS agent and OS keep from a container instance
REF = re.compile(r"\$\{([a-z][a-z0-9_]*)\.([A-Za-z0-9_-]+)\.([a-z0-9_]+)\}")
HTTPS = 443


class Stack:
    """The resources of one synthesized stack, addressable as ``type.name``."""

    def __init__(self, path: Path) -> None:
        file = path / "cdk.tf.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file} (run `make synth`)")
        self.name = file.parent.name
        self.config = json.loads(file.read_text())
        self.resources: dict[str, dict[str, dict]] = self.config.get("resource", {})

    def of(self, type_: str) -> dict[str, dict]:
        return self.resources.get(type_, {})

    def get(self, address: tuple[str, str] | None) -> dict | None:
        return self.of(address[0]).get(address[1]) if address else None

    @staticmethod
    def ref(value: Any) -> tuple[str, str] | None:
        """``${type.name.attr}`` (alone or inside a string) as ``(type, name)``."""
        match = REF.search(value) if isinstance(value, str) else None
        return (match.group(1), match.group(2)) if match else None

    def refs_to(self, value: Any, type_: str) -> list[str]:
        """Names of ``type_`` resources referenced anywhere in ``value``."""
        text = json.dumps(value)
        return [m.group(2) for m in REF.finditer(text) if m.group(1) == type_]

    @property
    def emulator(self) -> bool:
        """A stack aimed at a local emulator (fake credentials, no validation): alert delivery is exempt."""
        return any(p.get("skip_credentials_validation") for p in as_list(self.config.get("provider", {}).get("aws")))

    @property
    def region(self) -> str:
        providers = as_list(self.config.get("provider", {}).get("aws"))
        return next((p.get("region") for p in providers if "alias" not in p), "eu-north-1")


# ----------------------------------------------------------------------------------------------
# security groups


def rules(stack: Stack, group: str, direction: str) -> Iterator[dict]:
    """Rules of security group ``group`` (by name): standalone rule resources and inline blocks."""
    kind = "aws_vpc_security_group_ingress_rule" if direction == "ingress" else "aws_vpc_security_group_egress_rule"
    for rule in stack.of(kind).values():
        if stack.ref(rule.get("security_group_id")) == ("aws_security_group", group):
            yield rule
    legacy = "ingress" if direction == "ingress" else "egress"
    for rule in stack.of("aws_security_group_rule").values():
        if rule.get("type") == legacy and stack.ref(rule.get("security_group_id")) == ("aws_security_group", group):
            yield {**rule, "cidr_ipv4": first(rule.get("cidr_blocks") or [None]) or None}
    for rule in as_list((stack.of("aws_security_group").get(group) or {}).get(legacy)):
        yield {**rule, "cidr_ipv4": first(rule.get("cidr_blocks") or [None]) or None}


def allows_https(rule: dict) -> bool:
    protocol = str(rule.get("ip_protocol", rule.get("protocol", "")))
    if protocol in {"-1", "all"}:
        return True
    return protocol in {"tcp", "6"} and int(rule.get("from_port", 0)) <= HTTPS <= int(rule.get("to_port", -1))


def covers(cidr: str | None, target: str | None) -> bool:
    try:
        return bool(cidr and target) and ipaddress.ip_network(target).subnet_of(ipaddress.ip_network(cidr))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# reachability


@dataclass(frozen=True)
class Workload:
    address: str
    subnets: list[str]
    groups: list[str]
    needs: tuple[str, ...]


def workloads(stack: Stack) -> Iterator[Workload]:
    for name, env in stack.of("aws_batch_compute_environment").items():
        resources = first(env.get("compute_resources"))
        if not resources or str(resources.get("type", "")).startswith("FARGATE"):
            continue
        declared = tuple((env.get("//") or {}).get("needs_services", ()))
        yield Workload(
            f"aws_batch_compute_environment.{name}",
            stack.refs_to(resources.get("subnets"), "aws_subnet"),
            stack.refs_to(resources.get("security_group_ids"), "aws_security_group"),
            tuple(dict.fromkeys(BATCH_NEEDS + declared)),
        )
    for name, function in stack.of("aws_lambda_function").items():
        vpc = first(function.get("vpc_config"))
        if vpc:
            declared = tuple((function.get("//") or {}).get("needs_services", ()))
            yield Workload(
                f"aws_lambda_function.{name}",
                stack.refs_to(vpc.get("subnet_ids"), "aws_subnet"),
                stack.refs_to(vpc.get("security_group_ids"), "aws_security_group"),
                declared,
            )


def route_tables(stack: Stack, subnet: str) -> list[str]:
    return [
        stack.ref(a.get("route_table_id"))[1]
        for a in stack.of("aws_route_table_association").values()
        if stack.ref(a.get("subnet_id")) == ("aws_subnet", subnet) and stack.ref(a.get("route_table_id"))
    ]


def routes(stack: Stack, table: str) -> list[dict]:
    own = [
        r for r in stack.of("aws_route").values() if stack.ref(r.get("route_table_id")) == ("aws_route_table", table)
    ]
    return own + as_list((stack.of("aws_route_table").get(table) or {}).get("route"))


def internet_route(stack: Stack, table: str) -> str | None:
    """How a route table reaches the internet ("nat"/"igw"), if it does."""
    for route in routes(stack, table):
        if route.get("destination_cidr_block") != "0.0.0.0/0":
            continue
        if stack.ref(route.get("nat_gateway_id")):
            nat = stack.get(stack.ref(route.get("nat_gateway_id"))) or {}
            public = stack.ref(nat.get("subnet_id"))
            if public and any(internet_route(stack, t) == "igw" for t in route_tables(stack, public[1])):
                return "nat"
        elif (stack.ref(route.get("gateway_id")) or ("",))[0] == "aws_internet_gateway":
            return "igw"
    return None


def endpoints(stack: Stack, service: str) -> list[tuple[str, dict]]:
    return [
        (name, e)
        for name, e in stack.of("aws_vpc_endpoint").items()
        if str(e.get("service_name", "")).split(".", 3)[-1] == service
    ]


def egress_to(
    stack: Stack,
    work: Workload,
    *,
    cidr: str | None = None,
    group: str | None = None,
    prefix_list_of: str | None = None,
) -> bool:
    """Does any of the workload's groups allow HTTPS out to this destination?"""
    for own in work.groups:
        for rule in rules(stack, own, "egress"):
            if not allows_https(rule):
                continue
            target = rule.get("cidr_ipv4") or rule.get("cidr_blocks")
            if target == "0.0.0.0/0" or (cidr and covers(str(target), cidr)):
                return True
            if group and stack.ref(rule.get("referenced_security_group_id")) == ("aws_security_group", group):
                return True
            if prefix_list_of and stack.ref(rule.get("prefix_list_id")) == ("aws_vpc_endpoint", prefix_list_of):
                return True
    return False


def subnet_cidr(stack: Stack, subnet: str) -> str | None:
    return (stack.of("aws_subnet").get(subnet) or {}).get("cidr_block")


def interface_reachable(stack: Stack, work: Workload, name: str, endpoint: dict) -> str | None:
    """None when the workload reaches this interface endpoint, else why not."""
    if str(endpoint.get("vpc_endpoint_type", "Gateway")) != "Interface":
        return "it is not an interface endpoint"
    if endpoint.get("private_dns_enabled") is not True:
        return "its private DNS is off, so the service's name does not resolve to it"
    in_subnets = set(stack.refs_to(endpoint.get("subnet_ids"), "aws_subnet"))
    if not set(work.subnets) <= in_subnets:
        return "it has no network interface in every subnet (AZ) of the workload"
    groups = stack.refs_to(endpoint.get("security_group_ids"), "aws_security_group")
    admitted = any(
        allows_https(rule)
        and (
            stack.ref(rule.get("referenced_security_group_id")) in {("aws_security_group", g) for g in work.groups}
            or all(covers(str(rule.get("cidr_ipv4")), subnet_cidr(stack, s)) for s in work.subnets)
        )
        for group in groups
        for rule in rules(stack, group, "ingress")
    )
    if not admitted:
        return "its security group does not admit HTTPS from the workload"
    if not any(egress_to(stack, work, group=g) for g in groups) and not all(
        egress_to(stack, work, cidr=subnet_cidr(stack, s)) for s in in_subnets
    ):
        return "the workload's security group does not allow HTTPS out to it"
    return None


def check_reachability(stack: Stack) -> Iterator[Finding]:
    for work in workloads(stack):
        if not work.subnets:
            continue
        tables = {s: route_tables(stack, s) for s in work.subnets}
        if all(tables.values()) and all(internet_route(stack, t) for ts in tables.values() for t in ts):
            if not egress_to(stack, work, cidr="0.0.0.0/0"):
                yield Finding(
                    "reachability",
                    work.address,
                    "its subnets route to the internet but its security group allows no HTTPS out",
                    "add an egress rule for tcp/443 to 0.0.0.0/0",
                )
            continue
        for service in work.needs:
            problems = []
            for name, endpoint in endpoints(stack, service):
                if service in GATEWAY_SERVICES and endpoint.get("vpc_endpoint_type", "Gateway") == "Gateway":
                    on_tables = set(stack.refs_to(endpoint.get("route_table_ids"), "aws_route_table"))
                    if not all(set(ts) <= on_tables for ts in tables.values()):
                        problems.append(f"gateway endpoint {name} is not on the workload's route table")
                    elif not egress_to(stack, work, prefix_list_of=name):
                        problems.append(f"no HTTPS egress to the prefix list of {name}")
                    else:
                        break
                else:
                    why = interface_reachable(stack, work, name, endpoint)
                    if why is None:
                        break
                    problems.append(f"endpoint {name}: {why}")
            else:
                detail = "; ".join(problems) or "no NAT or internet route and no VPC endpoint of it"
                yield Finding(
                    "reachability",
                    work.address,
                    f"cannot reach {service} ({detail})",
                    f"add an interface endpoint com.amazonaws.{stack.region}.{service} in its subnets "
                    "(or route its subnets through a NAT gateway)",
                )


# ----------------------------------------------------------------------------------------------
# cost attribution


def required_tags(stack: Stack) -> dict[str, str]:
    """Tag key -> value that the budgets' cost filters and the anomaly monitors select on."""
    tags: dict[str, str] = {}
    for budget in stack.of("aws_budgets_budget").values():
        for item in as_list(budget.get("cost_filter")):
            if item.get("name") == "TagKeyValue":
                for value in item.get("values", []):
                    key, _, tag_value = str(value).removeprefix("user:").partition("$")
                    tags[key] = tag_value
    for monitor in stack.of("aws_ce_anomaly_monitor").values():
        try:
            spec = json.loads(monitor.get("monitor_specification") or "{}")
        except ValueError:
            continue
        for clause in [spec, *(spec.get("And") or [])]:  # the provider writes absent keys as null
            tag = clause.get("Tags")
            if tag and tag.get("Values"):
                tags[tag["Key"]] = tag["Values"][0]
    return tags


def missing(tags: dict | None, wanted: dict[str, str]) -> list[str]:
    tags = tags or {}
    return [f"{k}={v}" for k, v in wanted.items() if tags.get(k) != v]


def check_cost(stack: Stack) -> Iterator[Finding]:
    wanted = required_tags(stack)
    if not wanted:
        return
    for provider in as_list(stack.config.get("provider", {}).get("aws")):
        lack = missing(first(provider.get("default_tags")).get("tags"), wanted)
        if lack:
            yield Finding(
                "cost",
                f"provider.aws{'.' + provider['alias'] if 'alias' in provider else ''}",
                f"default_tags lack {', '.join(lack)}",
                "add them to the provider's default_tags",
            )
    for name, env in stack.of("aws_batch_compute_environment").items():
        resources = first(env.get("compute_resources"))
        if not resources or str(resources.get("type", "")).startswith("FARGATE"):
            continue
        address = f"aws_batch_compute_environment.{name}"
        lack = missing(resources.get("tags"), wanted)
        if lack:
            yield Finding(
                "cost",
                address,
                f"instances it launches lack {', '.join(lack)} (compute_resources.tags)",
                "set compute_resources.tags to the budget's tags",
            )
        template_ref = stack.ref(first(resources.get("launch_template")).get("launch_template_id"))
        template = stack.get(template_ref) or {}
        if not template_ref:
            yield Finding(
                "cost",
                address,
                "no launch template, so its volumes and network interfaces are untagged",
                "give it a launch template with tag_specifications",
            )
            continue
        specs = {s.get("resource_type"): s.get("tags") for s in as_list(template.get("tag_specifications"))}
        for kind in LAUNCH_TAGGED:
            lack = missing(specs.get(kind), wanted)
            if lack:
                yield Finding(
                    "cost",
                    f"aws_launch_template.{template_ref[1]}",
                    f"{kind}s launched by {name} lack {', '.join(lack)}",
                    f"add a tag_specifications block for {kind} with the budget's tags",
                )


# ----------------------------------------------------------------------------------------------
# alert delivery


def state_machine_topics(stack: Stack) -> list[tuple[str, str]]:
    found = []
    for name, machine in stack.of("aws_sfn_state_machine").items():
        for topic in stack.refs_to(machine.get("definition"), "aws_sns_topic"):
            found.append((f"aws_sfn_state_machine.{name}", topic))
    return found


def alert_routes(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """(address of the sender, topic name, the AWS service that publishes): alarms, EventBridge targets,
    budgets, anomaly subscriptions, and the state machines' failure notices (published with the
    workflow role, so no service)."""
    yield from (route for route in publishers(stack) if route[2] != "s3.amazonaws.com")
    for address, topic in state_machine_topics(stack):
        yield address, topic, ""


def humans(stack: Stack, topic: str) -> list[str]:
    found = [
        f"{s.get('protocol')}:{s.get('endpoint')}"
        for s in stack.of("aws_sns_topic_subscription").values()
        if stack.ref(s.get("topic_arn")) == ("aws_sns_topic", topic) and s.get("protocol") in HUMAN_PROTOCOLS
    ]
    for type_ in CHAT_TYPES:
        found += [
            f"chat:{n}"
            for n, c in stack.of(type_).items()
            if topic in stack.refs_to(c.get("sns_topic_arns"), "aws_sns_topic")
        ]
    return found


def key_allows(policy: dict, service: str) -> bool:
    needed = ("kms:GenerateDataKey", "kms:Decrypt")
    for statement in as_list(policy.get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        principals = (
            as_list(first(statement.get("Principal")).get("Service"))
            if isinstance(statement.get("Principal"), dict)
            else []
        )
        if service not in principals:
            continue
        actions = as_list(statement.get("Action"))
        if all(any(fnmatch.fnmatchcase(need, action) for action in actions) for need in needed):
            return True
    return False


def check_alerts(stack: Stack) -> Iterator[Finding]:
    if stack.emulator:
        return
    reported: set[str] = set()
    for name, budget in stack.of("aws_budgets_budget").items():
        for notification in as_list(budget.get("notification")):
            topics = stack.refs_to(notification.get("subscriber_sns_topic_arns"), "aws_sns_topic")
            if not notification.get("subscriber_email_addresses") and not any(humans(stack, t) for t in topics):
                yield Finding(
                    "alerts",
                    f"aws_budgets_budget.{name}",
                    f"the {notification.get('threshold')} % {notification.get('notification_type')} "
                    "notification reaches no person",
                    "add subscriber_email_addresses or a subscribed topic",
                )
    for sender, topic, service in alert_routes(stack):
        body = stack.of("aws_sns_topic").get(topic) or {}
        if not humans(stack, topic) and topic not in reported:
            reported.add(topic)
            yield Finding(
                "alerts",
                f"aws_sns_topic.{topic}",
                f"no person is subscribed (first sender: {sender})",
                "subscribe an e-mail, https, SMS or chat endpoint (profile: budget.subscribers)",
            )
        key_ref = stack.ref(body.get("kms_master_key_id"))
        if not service or not body.get("kms_master_key_id"):
            continue
        if key_ref is None:
            yield Finding(
                "alerts",
                f"aws_sns_topic.{topic}",
                f"{service} cannot use its key "
                f"{body.get('kms_master_key_id')} (an AWS-managed key admits no other service)",
                "encrypt the topic with a customer-managed key whose policy allows the service",
            )
            continue
        key = stack.get(key_ref) or {}
        try:
            policy = json.loads(key.get("policy") or "{}")
        except ValueError:
            policy = {}
        if not key_allows(policy, service) and f"{topic}:{service}" not in reported:
            reported.add(f"{topic}:{service}")
            yield Finding(
                "alerts",
                f"aws_kms_key.{key_ref[1]}",
                f"its policy does not let {service} use it, so {sender} cannot publish to {topic}",
                f"allow {service} kms:GenerateDataKey* and kms:Decrypt in the key policy",
            )


# ----------------------------------------------------------------------------------------------
# placement


def instance_table(region: str) -> dict[str, dict]:
    table = PRICES / f"{region}.json"
    return json.loads(table.read_text()).get("instances", {}) if table.exists() else {}


def job_needs(definition: dict) -> dict[str, int]:
    try:
        container = json.loads(definition.get("container_properties") or "{}")
    except ValueError:
        container = {}
    needs = {"VCPU": int(container.get("vcpus") or 0), "MEMORY": int(container.get("memory") or 0), "GPU": 0}
    for item in container.get("resourceRequirements", []):
        needs[item["type"]] = int(float(item["value"]))
    return needs


def nodes(value: Any) -> Iterator[dict]:
    """Every object in a JSON document, depth first (states nested in Map and Parallel too)."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from nodes(child)


def submissions(stack: Stack) -> list[tuple[str, str]]:
    """(queue, job definition) pairs the state machines submit; every pair if no machine does.

    A task whose queue comes from the state (``"JobQueue.$": "$.queue"``, an execution's priority)
    may go to any queue the definition ever puts under that key (``"queue": <queue ARN>``)."""
    pairs: set[tuple[str, str]] = set()
    for machine in stack.of("aws_sfn_state_machine").values():
        try:
            document = json.loads(machine.get("definition") or "{}")
        except ValueError:
            continue
        assigned: dict[str, set[str]] = {}
        for node in nodes(document):
            for key, value in node.items():
                ref = stack.ref(value) if isinstance(value, str) else None
                if ref and ref[0] == "aws_batch_job_queue":
                    assigned.setdefault(key, set()).add(ref[1])
        for node in nodes(document):
            if not str(node.get("Resource", "")).startswith("arn:aws:states:::batch:submitJob"):
                continue
            params = node.get("Parameters", {})
            definition, queue = stack.ref(params.get("JobDefinition")), stack.ref(params.get("JobQueue"))
            path = str(params.get("JobQueue.$", ""))
            queues = [queue[1]] if queue else sorted(assigned.get(path.rsplit(".", 1)[-1], set()) if path else ())
            pairs.update((name, definition[1]) for name in queues if definition)
    if not pairs:
        pairs = {(q, d) for q in stack.of("aws_batch_job_queue") for d in stack.of("aws_batch_job_definition")}
    return sorted(pairs)


def check_placement(stack: Stack) -> Iterator[Finding]:
    table = instance_table(stack.region)
    envs = stack.of("aws_batch_compute_environment")
    for queue_name, definition_name in submissions(stack):
        queue = stack.of("aws_batch_job_queue").get(queue_name) or {}
        needs = job_needs(stack.of("aws_batch_job_definition").get(definition_name) or {})
        order = sorted(as_list(queue.get("compute_environment_order")), key=lambda o: int(o.get("order", 0)))
        chain = [stack.ref(o.get("compute_environment")) for o in order]
        types = {
            ref[1]: as_list(first(envs.get(ref[1], {}).get("compute_resources")).get("instance_type"))
            for ref in chain
            if ref
        }
        unknown = sorted({t for ts in types.values() for t in ts if t not in table})
        address = f"aws_batch_job_definition.{definition_name}"
        if unknown:
            yield Finding(
                "placement",
                address,
                f"instance type(s) {', '.join(unknown)} of queue {queue_name} are not in the instance table",
                f"add them to conf/prices/{stack.region}.json",
            )
            continue
        has_gpu = {env: any(table[t].get("gpus", 0) > 0 for t in ts) for env, ts in types.items()}
        first_env = next(iter(types), None)
        if first_env is None:
            yield Finding("placement", address, f"queue {queue_name} has no compute environment", "add one")
            continue
        fits = [
            t
            for t in types[first_env]
            if table[t]["vcpus"] >= needs["VCPU"]
            and table[t]["memory_mib"] - ECS_RESERVED_MIB >= needs["MEMORY"]
            and table[t].get("gpus", 0) >= needs["GPU"]
        ]
        if needs["GPU"] == 0 and any(has_gpu.values()):
            gpu_envs = ", ".join(e for e, g in has_gpu.items() if g)
            yield Finding(
                "placement",
                address,
                f"a CPU job sent to queue {queue_name}, which can start GPU instances ({gpu_envs})",
                "send it to a queue of CPU compute environments only",
            )
        elif needs["GPU"] > 0 and not has_gpu[first_env]:
            yield Finding(
                "placement",
                address,
                f"a GPU job whose queue {queue_name} starts with CPU-only {first_env}",
                "put the GPU compute environment first",
            )
        elif not fits:
            yield Finding(
                "placement",
                address,
                f"no instance type of {first_env} fits {needs['VCPU']} vCPU, {needs['MEMORY']} MiB, {needs['GPU']} GPU",
                "add a larger instance type or ask for less",
            )


# ----------------------------------------------------------------------------------------------
# images


def check_images(stack: Stack, images: Path = IMAGES) -> Iterator[Finding]:
    repositories = stack.of("aws_ecr_repository")
    for name, definition in stack.of("aws_batch_job_definition").items():
        try:
            image = str(json.loads(definition.get("container_properties") or "{}").get("image", ""))
        except ValueError:
            image = ""
        address = f"aws_batch_job_definition.{name}"
        ref = stack.ref(image)
        if not ref or ref[0] != "aws_ecr_repository" or ref[1] not in repositories:
            yield Finding(
                "images",
                address,
                f"image {image!r} is not a repository this stack creates",
                "point it at the stage's aws_ecr_repository",
            )
            continue
        tag = image.rsplit("}", 1)[-1]
        if not tag.startswith(":") or tag in {":", ":latest"}:
            yield Finding(
                "images",
                address,
                f"image tag {tag or '(none)'!r} is not a fixed release tag",
                "set the stage's image_tag in the profile",
            )
        repo_name = str(repositories[ref[1]].get("name", "")).rsplit("/", 1)[-1]
        if dockerfile_for(repo_name, images) is None:
            yield Finding(
                "images",
                address,
                f"no Dockerfile under {images.name}/ builds {repo_name}",
                f"add {images.name}/{repo_name}/Dockerfile (or {images.name}/{repo_name}/ and a shared *.Dockerfile)",
            )


# ----------------------------------------------------------------------------------------------
# placeholders

# Reserved for documentation and testing, never delivered: RFC 2606 (example.org/.com/.net, .example,
# .invalid, .test, localhost) and RFC 6761.
RESERVED_DOMAINS = ("example.org", "example.com", "example.net")
RESERVED_TLDS = ("example", "invalid", "test", "localhost")
DOCUMENTATION_ACCOUNT = "123456789012"  # the account id of AWS's own examples
DEFAULT_PLACEHOLDER_HINT = "set real ones where this stack's settings come from"


def reserved_address(address: str) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return (
        domain in RESERVED_DOMAINS
        or any(domain.endswith("." + d) for d in RESERVED_DOMAINS)
        or domain.rsplit(".", 1)[-1] in RESERVED_TLDS
    )


def fake_account(account: str) -> bool:
    """An example profile's id: twelve equal digits (111111111111) or AWS's documentation id."""
    return account == DOCUMENTATION_ACCOUNT or bool(re.fullmatch(r"(\d)\1{11}", account))


def alert_addresses(stack: Stack) -> list[str]:
    """Every e-mail address the stack sends alerts to: topic subscriptions, budget notifications,
    anomaly subscriptions."""
    found = [
        str(s.get("endpoint"))
        for s in stack.of("aws_sns_topic_subscription").values()
        if s.get("protocol") in {"email", "email-json"}
    ]
    for budget in stack.of("aws_budgets_budget").values():
        for notification in as_list(budget.get("notification")):
            found += [str(a) for a in as_list(notification.get("subscriber_email_addresses"))]
    for sub in stack.of("aws_ce_anomaly_subscription").values():
        found += [str(s.get("address")) for s in as_list(sub.get("subscriber")) if s.get("type") == "EMAIL"]
    return list(dict.fromkeys(found))


def placeholders(stack: Stack) -> list[str]:
    """The example values in a cloud stack (an emulator stack's are expected)."""
    if stack.emulator:
        return []
    accounts = {
        str(a)
        for p in as_list(stack.config.get("provider", {}).get("aws"))
        for a in as_list(p.get("allowed_account_ids"))
    }
    return [f"account id {a}" for a in sorted(accounts) if fake_account(a)] + [
        f"alert address {a}" for a in alert_addresses(stack) if reserved_address(a)
    ]


def placeholder_refusal(found: list[str], hint: str) -> Finding:
    return Finding("placeholders", "stack", f"example values would be deployed ({', '.join(found)})", hint)


def check_placeholders(stack: Stack, hint: str = DEFAULT_PLACEHOLDER_HINT) -> Iterator[Finding]:
    found = placeholders(stack)
    if found:
        yield placeholder_refusal(found, hint)


# budgets Budgets accepts
# https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create.html (no forecasted
# alerts on daily budgets), https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_Notification.html
# (up to ten notifications, one SNS and up to 10 e-mail subscribers each),
# https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create-filters.html (filter values are ORed)

MAX_NOTIFICATIONS, MAX_EMAILS = 10, 10


def check_budgets(stack: Stack) -> Iterator[Finding]:
    for name, budget in stack.of("aws_budgets_budget").items():
        address, unit = f"aws_budgets_budget.{name}", budget.get("time_unit")
        notes = as_list(budget.get("notification"))
        for note in notes:
            if note.get("notification_type") == "FORECASTED" and unit == "DAILY":
                yield Finding(
                    "budgets",
                    address,
                    f"a FORECASTED notification at {note.get('threshold')} % on a DAILY budget (Budgets rejects it)",
                    "use ACTUAL notifications only on DAILY budgets, or a MONTHLY budget",
                )
            if (
                len(as_list(note.get("subscriber_sns_topic_arns"))) > 1
                or len(as_list(note.get("subscriber_email_addresses"))) > MAX_EMAILS
            ):
                yield Finding(
                    "budgets",
                    address,
                    "a notification with more than 1 SNS or 10 e-mail subscribers",
                    "subscribe more through the topic",
                )
        if len(notes) > MAX_NOTIFICATIONS:
            yield Finding("budgets", address, f"{len(notes)} notifications (at most 10)", "drop some thresholds")
        for item in as_list(budget.get("cost_filter")):
            if item.get("name") == "TagKeyValue" and len(item.get("values", [])) > 1:
                yield Finding(
                    "budgets",
                    address,
                    f"TagKeyValue values {item['values']} are ORed: the budget counts spend carrying any one of them",
                    "filter on one environment-unique tag (user:CostScope$<project>-<env>)",
                )


WORKFLOW_FIXES = {
    "retry-order": "order the Retry/Catch rules specific-first, States.ALL alone and last",
    "selected": "declare the key in the function's answer and return it on every path, or stop selecting it",
    "bounded": "answer counts and an S3 key instead of the list",
    "notified": "route the failure through an SNS publish of the alert topic",
    "present": "put the path there before the state reads it (a ResultSelector key, a Choice on the input)",
}


def check_workflow(stack: Stack) -> Iterator[Finding]:
    """The ASL contract (tools/asl_contract.py) of every state machine of the stack."""
    functions = {
        f"aws_lambda_function.{name}": function["//"]
        for name, function in stack.of("aws_lambda_function").items()
        if isinstance(function.get("//"), dict) and "answer" in function["//"]
    }
    declared = {address: comment["answer"] for address, comment in functions.items()}
    bounds = {address: comment.get("answer_bounds", {}) for address, comment in functions.items()}

    def answer_of(value: Any) -> dict | None:
        address = stack.ref(value)
        return declared.get(f"{address[0]}.{address[1]}") if address else None

    for name, machine in stack.of("aws_sfn_state_machine").items():
        document = asl_contract.definition_of(machine)
        for rule, where, problem in asl_contract.problems(document, declared, answer_of, bounds):
            yield Finding(
                "workflow", f"aws_sfn_state_machine.{name}", f"{rule}: {where}: {problem}", WORKFLOW_FIXES[rule]
            )


CHECKS = {
    "reachability": check_reachability,
    "cost": check_cost,
    "alerts": check_alerts,
    "placement": check_placement,
    "workflow": check_workflow,
    "images": check_images,
    "budgets": check_budgets,
    **RULES,
}


def findings(stack: Stack, images: Path = IMAGES) -> list[Finding]:
    """Every check's findings, each once (a job sent to three queues of one environment is one problem)."""
    checks = {**CHECKS, "images": lambda s: check_images(s, images)}
    return list(dict.fromkeys(finding for check in checks.values() for finding in check(stack)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="synthesized stack folders or their cdk.tf.json")
    parser.add_argument("--images", type=Path, default=IMAGES, help="folder of the image sources (default images/)")
    parser.add_argument(
        "--refuse-placeholders", action="store_true", help="fail on example account ids and alert addresses"
    )
    parser.add_argument("--placeholder-hint", default=DEFAULT_PLACEHOLDER_HINT, help="where to set real ones")
    args = parser.parse_args(argv)
    stacks = [Stack(path) for path in args.paths]
    if args.refuse_placeholders:
        # Example values stop a deployment before anything else: one line for every stack given.
        found = list(dict.fromkeys(value for stack in stacks for value in placeholders(stack)))
        if found:
            first_stack = next(stack for stack in stacks if placeholders(stack))
            refusal = placeholder_refusal(found, args.placeholder_hint)
            print(f"{first_stack.name}: {refusal.line()}")
            return 1
    failed = 0
    for stack in stacks:
        found = findings(stack, args.images)
        if not args.refuse_placeholders:
            for value in placeholders(stack):
                print(f"{stack.name}: NOTE placeholders: {value} (make deploy-aws refuses it)")
        for finding in found:
            print(f"{stack.name}: {finding.line()}")
        failed += len(found)
        exempt = " (emulator stack: alert delivery not checked)" if stack.emulator else ""
        print(f"preflight {stack.name}: {len(found)} finding(s){exempt}")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main)
