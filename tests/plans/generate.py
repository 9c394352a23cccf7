"""Make the plan-review corpus: real ``terraform plan`` JSON against the emulator, one file per case.

    python -m tests.plans.generate [CASE ...]  # starts its own emulator, writes tests/plans/real/*.json

A small config (bucket, queue, key, table, log group, parameter, role + policy, VPC + security
group rule, topics with count, outputs) is applied to the emulator; each case changes the config,
the state or the emulator (taint, an out-of-band change, an import source) and saves the plan.
What the review must say of each case is written by hand in ``tests/plans/expected.json``, not
derived from the review. Only the parts the review reads are kept (resource_changes,
resource_drift, output_changes, the changed resources' configuration), so the files stay small.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "real"
sys.path.insert(0, str(REPO))

ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def policy(actions: list[str], resources: list[str]) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}
    )


BASE: dict = {
    "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}}},
    "provider": {
        "aws": {
            "region": "eu-north-1",
            "access_key": "test",
            "secret_key": "test",
            "skip_credentials_validation": True,
            "skip_requesting_account_id": True,
            "skip_metadata_api_check": "true",
            "s3_use_path_style": True,
        }
    },
    "resource": {
        "aws_s3_bucket": {"data": {"bucket": "corpus-data"}},
        "aws_sqs_queue": {"jobs": {"name": "corpus-jobs", "message_retention_seconds": 345600}},
        "aws_kms_key": {"key": {"description": "corpus key", "deletion_window_in_days": 7}},
        "aws_dynamodb_table": {
            "table": {
                "name": "corpus-table",
                "billing_mode": "PAY_PER_REQUEST",
                "hash_key": "id",
                "attribute": [{"name": "id", "type": "S"}],
            }
        },
        "aws_cloudwatch_log_group": {"logs": {"name": "/corpus/logs", "retention_in_days": 7}},
        "aws_ssm_parameter": {"setting": {"name": "/corpus/setting", "type": "String", "value": "on"}},
        "aws_sns_topic": {
            "alerts": {"name": "corpus-alerts"},
            "many": {"count": 2, "name": "corpus-many-${count.index}"},
        },
        "aws_iam_role": {"app": {"name": "corpus-app", "assume_role_policy": json.dumps(ROLE_TRUST)}},
        "aws_iam_role_policy": {
            "app": {
                "name": "app",
                "role": "${aws_iam_role.app.name}",
                "policy": policy(["s3:GetObject"], ["arn:aws:s3:::corpus-data/*"]),
            }
        },
        "aws_vpc": {"net": {"cidr_block": "10.77.0.0/16"}},
        "aws_security_group": {"web": {"name": "corpus-web", "vpc_id": "${aws_vpc.net.id}", "description": "corpus"}},
        "aws_vpc_security_group_ingress_rule": {
            "https": {
                "security_group_id": "${aws_security_group.web.id}",
                "ip_protocol": "tcp",
                "from_port": 443,
                "to_port": 443,
                "cidr_ipv4": "10.77.0.0/16",
            }
        },
    },
    "output": {
        "queue_url": {"value": "${aws_sqs_queue.jobs.url}"},
        "token": {"value": "first-token", "sensitive": True},
    },
}


def edit(fn: Callable[[dict], None]) -> Callable[[dict], dict]:
    def apply(config: dict) -> dict:
        changed = copy.deepcopy(config)
        fn(changed)
        changed["resource"] = {t: r for t, r in changed["resource"].items() if r}  # no empty resource types
        declared = {f"{t}.{n}" for t, body in changed["resource"].items() for n in body}
        changed["output"] = {  # outputs that name a removed resource go with it
            name: out
            for name, out in changed.get("output", {}).items()
            if not any(ref not in declared for ref in re.findall(r"\$\{(aws_[a-z0-9_]+\.[a-z0-9_]+)\.", str(out)))
        }
        return changed

    return apply


def drop(type_: str, name: str) -> Callable[[dict], dict]:
    return edit(lambda c: c["resource"][type_].pop(name))


def setv(type_: str, name: str, key: str, value) -> Callable[[dict], dict]:
    return edit(lambda c: c["resource"][type_][name].__setitem__(key, value))


def add(type_: str, name: str, body: dict) -> Callable[[dict], dict]:
    return edit(lambda c: c["resource"].setdefault(type_, {}).__setitem__(name, body))


def moved(type_: str, old: str, new: str) -> Callable[[dict], dict]:
    def fn(c: dict) -> None:
        c["resource"][type_][new] = c["resource"][type_].pop(old)
        c["moved"] = [{"from": f"{type_}.{old}", "to": f"{type_}.{new}"}]

    return edit(fn)


def removed(type_: str, name: str) -> Callable[[dict], dict]:
    def fn(c: dict) -> None:
        c["resource"][type_].pop(name)
        c["removed"] = [{"from": f"{type_}.{name}", "lifecycle": {"destroy": False}}]

    return edit(fn)


def widen(c: dict) -> None:
    c["resource"]["aws_iam_role_policy"]["app"]["policy"] = policy(["s3:*"], ["*"])


def narrow(c: dict) -> None:
    c["resource"]["aws_iam_role_policy"]["app"]["policy"] = policy(["s3:GetObject"], ["arn:aws:s3:::corpus-data/in/*"])


def new_principal(c: dict) -> None:
    trust = copy.deepcopy(ROLE_TRUST)
    trust["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::999999999999:root"}
    c["resource"]["aws_iam_role"]["app"]["assume_role_policy"] = json.dumps(trust)


def policy_after_apply(c: dict) -> None:
    c["resource"]["aws_sqs_queue"]["extra"] = {"name": "corpus-extra"}
    c["resource"]["aws_iam_role_policy"]["app"]["policy"] = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sqs:SendMessage"], '
        '"Resource": ["${aws_sqs_queue.extra.arn}"]}]}'
    )


def bucket_policy(c: dict) -> None:
    c["resource"]["aws_s3_bucket_policy"] = {
        "data": {
            "bucket": "${aws_s3_bucket.data.id}",
            "policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": ["arn:aws:s3:::corpus-data", "arn:aws:s3:::corpus-data/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
        }
    }


def open_ssh(c: dict) -> None:
    c["resource"]["aws_vpc_security_group_ingress_rule"]["ssh"] = {
        "security_group_id": "${aws_security_group.web.id}",
        "ip_protocol": "tcp",
        "from_port": 22,
        "to_port": 22,
        "cidr_ipv4": "0.0.0.0/0",
    }


def triggered(c: dict) -> None:
    c["resource"]["aws_sns_topic"]["alerts"]["lifecycle"] = {"replace_triggered_by": ["aws_sqs_queue.jobs"]}
    c["resource"]["aws_sqs_queue"]["jobs"]["message_retention_seconds"] = 86400


def deferred(c: dict) -> None:
    c["resource"]["aws_sqs_queue"]["extra"] = {"name": "corpus-extra"}
    c["data"] = {
        "aws_iam_policy_document": {
            "send": {"statement": [{"actions": ["sqs:SendMessage"], "resources": ["${aws_sqs_queue.extra.arn}"]}]}
        }
    }
    c["output"]["send_policy"] = {"value": "${data.aws_iam_policy_document.send.json}"}


def outputs(c: dict) -> None:
    c["output"]["token"]["value"] = "second-token"
    c["output"]["region"] = {"value": "eu-north-1"}


def imported(c: dict) -> None:
    c["resource"]["aws_sqs_queue"]["adopted"] = {"name": "corpus-adopted"}
    c["import"] = [{"to": "aws_sqs_queue.adopted", "id": "corpus-adopted-url"}]


# Secrets of the sensitive cases: none may appear in any file the review writes (tests/test_plan_corpus.py).
SECRETS = {"external_id": "XID-4242-corpus-secret", "office_cidr": "203.0.113.77/32", "token": "tok-9f8e7d-corpus"}


def sensitive_variables(c: dict) -> None:
    """Sensitive values inside attributes: a jsonencode()d trust policy (Terraform marks the whole
    attribute), a security-group rule's cidr_blocks ([true]) and a nested output value."""
    c["variable"] = {name: {"type": "string", "sensitive": True, "default": v} for name, v in SECRETS.items()}
    trust = copy.deepcopy(ROLE_TRUST)
    trust["Statement"][0]["Condition"] = {"StringEquals": {"sts:ExternalId": "EXTERNAL_ID"}}
    c["resource"]["aws_iam_role"]["partner"] = {
        "name": "corpus-partner",
        "assume_role_policy": "${jsonencode(" + json.dumps(trust).replace('"EXTERNAL_ID"', "var.external_id") + ")}",
    }
    c["resource"]["aws_security_group_rule"] = {
        "office": {
            "type": "ingress",
            "security_group_id": "${aws_security_group.web.id}",
            "protocol": "tcp",
            "from_port": 22,
            "to_port": 22,
            "cidr_blocks": ["${var.office_cidr}"],
        }
    }
    c["output"]["partner"] = {"value": {"token": "${var.token}", "role": "corpus-partner"}, "sensitive": True}


def precondition(c: dict) -> None:
    """A failed precondition: Terraform 1.11 still writes the plan file, marked errored."""
    c["variable"] = {"stage": {"type": "string", "default": "prod"}}
    c["resource"]["aws_sqs_queue"]["jobs"]["lifecycle"] = {
        "precondition": [{"condition": '${var.stage == "dev"}', "error_message": "jobs queue is dev-only"}]
    }


def mixed(c: dict) -> None:
    c["resource"]["aws_sqs_queue"]["extra"] = {"name": "corpus-extra"}
    c["resource"]["aws_sns_topic"].pop("alerts")
    c["resource"]["aws_cloudwatch_log_group"]["logs"]["retention_in_days"] = 14


# name -> (config change, plan arguments, state/emulator preparation)
CASES: dict[str, tuple[Callable[[dict], dict], list[str], str | None]] = {
    "unchanged": (edit(lambda c: None), [], None),
    "add-queue": (add("aws_sqs_queue", "extra", {"name": "corpus-extra"}), [], None),
    "change-queue-retention": (setv("aws_sqs_queue", "jobs", "message_retention_seconds", 86400), [], None),
    "change-log-retention": (setv("aws_cloudwatch_log_group", "logs", "retention_in_days", 30), [], None),
    "replace-bucket-rename": (setv("aws_s3_bucket", "data", "bucket", "corpus-data-2"), [], None),
    "replace-queue-fifo": (
        edit(lambda c: c["resource"]["aws_sqs_queue"]["jobs"].update(name="corpus-jobs.fifo", fifo_queue=True)),
        [],
        None,
    ),
    "replace-table-hash-key": (
        edit(
            lambda c: c["resource"]["aws_dynamodb_table"]["table"].update(
                hash_key="pk", attribute=[{"name": "pk", "type": "S"}]
            )
        ),
        [],
        None,
    ),
    "destroy-bucket": (drop("aws_s3_bucket", "data"), [], None),
    "destroy-key": (drop("aws_kms_key", "key"), [], None),
    "destroy-table": (drop("aws_dynamodb_table", "table"), [], None),
    "destroy-log-group": (drop("aws_cloudwatch_log_group", "logs"), [], None),
    "destroy-parameter": (drop("aws_ssm_parameter", "setting"), [], None),
    "destroy-queue": (drop("aws_sqs_queue", "jobs"), [], None),
    "destroy-topic": (drop("aws_sns_topic", "alerts"), [], None),
    "destroy-role-policy": (drop("aws_iam_role_policy", "app"), [], None),
    "count-shrink": (setv("aws_sns_topic", "many", "count", 1), [], None),
    "moved-topic": (moved("aws_sns_topic", "alerts", "notices"), [], None),
    "moved-bucket": (moved("aws_s3_bucket", "data", "lake"), [], None),
    "forget-key": (removed("aws_kms_key", "key"), [], None),
    "forget-topic": (removed("aws_sns_topic", "alerts"), [], None),
    "tainted-bucket": (edit(lambda c: None), [], "taint aws_s3_bucket.data"),
    "tainted-topic": (edit(lambda c: None), [], "taint aws_sns_topic.alerts"),
    "replace-requested-queue": (edit(lambda c: None), ["-replace=aws_sqs_queue.jobs"], None),
    "replace-requested-topic": (edit(lambda c: None), ["-replace=aws_sns_topic.alerts"], None),
    "replace-triggered-by": (edit(triggered), [], None),
    "iam-widening": (edit(widen), [], None),
    "iam-narrowing": (edit(narrow), [], None),
    "trust-new-principal": (edit(new_principal), [], None),
    "policy-known-after-apply": (edit(policy_after_apply), [], None),
    "bucket-policy-added": (edit(bucket_policy), [], None),
    "sg-open-ssh": (edit(open_ssh), [], None),
    "sg-rule-removed": (drop("aws_vpc_security_group_ingress_rule", "https"), [], None),
    "data-read-deferred": (edit(deferred), [], None),
    "outputs-changed": (edit(outputs), [], None),
    "import-queue": (edit(imported), [], "create-queue corpus-adopted"),
    "drift-queue": (edit(lambda c: None), [], "drift-queue"),
    "mixed-add-destroy-change": (edit(mixed), [], None),
    "sensitive-variables": (edit(sensitive_variables), [], None),
    "errored-precondition": (edit(precondition), [], None),
    "state-not-plan": (edit(lambda c: None), [], "state"),
}
# Keys of ``terraform show -json`` kept besides the changes: what the review checks before reading.
KEPT = ("format_version", "terraform_version", "applyable", "complete", "errored", "variables", "deferred_changes")


def keep_relevant(plan: dict) -> dict:
    """The parts of a plan the review reads, for the changed resources only."""
    changed = [
        rc
        for rc in plan.get("resource_changes", [])
        if rc["change"]["actions"] != ["no-op"] or rc.get("previous_address") or rc["change"].get("importing")
    ]
    addresses = {rc["address"] for rc in changed}
    config = plan.get("configuration", {}).get("root_module", {})
    if "values" in plan:  # a state, kept whole
        return plan
    return {
        **{key: plan[key] for key in KEPT if key in plan},
        "resource_changes": changed,
        "resource_drift": plan.get("resource_drift", []),
        "output_changes": plan.get("output_changes", {}),
        "planned_values": {
            "root_module": {
                "resources": [
                    r
                    for r in plan.get("planned_values", {}).get("root_module", {}).get("resources", [])
                    if r["address"] in addresses
                ]
            }
        },
        "configuration": {
            "root_module": {"resources": [r for r in config.get("resources", []) if r["address"] in addresses]}
        },
    }


def main() -> int:
    from local.deploy import cli_config
    from local.emulator import free_port
    from tools.tf_cli_config import plugin_cache_lock

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="corpus-"))
    env = {**os.environ, "EMULATOR_STATE_DIR": str(work / "emulator"), "EMULATOR_ENDPOINT": f"http://127.0.0.1:{port}"}
    subprocess.run(
        [sys.executable, "-m", "local.emulator", "start", "--port", str(port)], cwd=REPO, env=env, check=True
    )
    tf_env = {
        **env,
        **cli_config(),
        "AWS_ENDPOINT_URL": env["EMULATOR_ENDPOINT"],
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "eu-north-1",
        "TF_IN_AUTOMATION": "1",
    }
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=env["EMULATOR_ENDPOINT"],
        region_name="eu-north-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        base = work / "base"
        base.mkdir()
        (base / "main.tf.json").write_text(json.dumps(BASE, indent=1))
        shutil.copyfile(REPO / ".terraform.lock.hcl", base / ".terraform.lock.hcl")

        def tf(folder: Path, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
            proc = subprocess.run(["terraform", *args], cwd=folder, env=tf_env, capture_output=True, text=True)
            if proc.returncode not in ok:
                raise SystemExit(f"terraform {args[0]} failed in {folder.name}: {proc.stderr[-1500:]}")
            return proc

        with plugin_cache_lock(base, tf_env):
            tf(base, "init", "-input=false", "-no-color", "-lockfile=readonly")
        tf(base, "apply", "-auto-approve", "-input=false", "-no-color")
        OUT.mkdir(parents=True, exist_ok=True)
        wanted = sys.argv[1:] or list(CASES)
        for name, (change, plan_args, prepare) in ((n, CASES[n]) for n in wanted):
            case = work / name
            shutil.copytree(base, case, symlinks=True)
            (case / "main.tf.json").write_text(json.dumps(change(BASE), indent=1))
            if prepare and prepare.startswith("taint "):
                tf(case, "taint", prepare.split()[1])
            elif prepare and prepare.startswith("create-queue "):
                url = sqs.create_queue(QueueName=prepare.split()[1])["QueueUrl"]
                config = json.loads((case / "main.tf.json").read_text())
                config["import"][0]["id"] = url
                (case / "main.tf.json").write_text(json.dumps(config, indent=1))
            elif prepare == "drift-queue":
                url = sqs.get_queue_url(QueueName="corpus-jobs")["QueueUrl"]
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "3600"})
            # Only the drift case needs a refresh; the others plan from the state as the base apply left it.
            refresh = [] if prepare == "drift-queue" else ["-refresh=false"]
            if prepare == "state":  # `terraform show -json` of a state, which is no plan
                shown = json.loads(tf(case, "show", "-json", "terraform.tfstate").stdout)
            else:
                # An errored plan (exit 1) is still written: its file is what the review must refuse.
                tf(case, "plan", "-input=false", "-no-color", "-out=plan.tfplan", *refresh, *plan_args, ok=(0, 1))
                shown = json.loads(tf(case, "show", "-json", "plan.tfplan").stdout)
            (OUT / f"{name}.json").write_text(json.dumps(keep_relevant(shown), indent=1, sort_keys=True) + "\n")
            if prepare == "drift-queue":  # put the emulator back for the next cases
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "345600"})
            print(f"corpus: {name}")
    finally:
        subprocess.run([sys.executable, "-m", "local.emulator", "stop"], cwd=REPO, env=env, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
