"""Plan-review benchmark: a generated plan of 1,000 resource changes, reviewed and rendered.

Target (issue: plan review): under 2 s for 1,000 changes. Mixes what a big plan holds: creates,
policy updates (statement diffs), replaces of stateful resources, security-group rule deletes,
moves and imports.

    python bench/review.py [--changes 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools import plan_review  # noqa: E402


def change(address: str, actions: list[str], before: dict | None, after: dict | None, **extra) -> dict:
    type_ = address.split(".")[0]
    return {
        "address": address,
        "mode": "managed",
        "type": type_,
        "name": address.split(".")[1],
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": actions, "before": before, "after": after, "after_unknown": {}},
        **extra,
    }


def big_plan(count: int) -> dict:
    def doc(actions: list[str], resources: list[str]) -> str:
        return json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}
        )

    changes = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            changes.append(change(f"aws_sqs_queue.q{i}", ["create"], None, {"name": f"q{i}"}))
        elif kind < 6:
            before = {"policy": doc(["s3:GetObject"], [f"arn:aws:s3:::b{i}/*"])}
            after = {"policy": doc(["s3:GetObject", "s3:PutObject", f"sqs:Send{i}"], [f"arn:aws:s3:::b{i}/*", "*"])}
            changes.append(change(f"aws_iam_role_policy.p{i}", ["update"], before, after))
        elif kind < 8:
            replaced = change(f"aws_s3_bucket.b{i}", ["delete", "create"], {"bucket": f"b{i}"}, {"bucket": f"c{i}"})
            replaced["change"]["replace_paths"] = [["bucket"]]
            changes.append(replaced)
        elif kind == 8:
            rule = {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": "0.0.0.0/0"}
            changes.append(change(f"aws_vpc_security_group_ingress_rule.r{i}", ["delete"], rule, None))
        else:
            changes.append(change(f"aws_sns_topic.t{i}", ["no-op"], {}, {}, previous_address=f"aws_sns_topic.old{i}"))
    return {"format_version": "1.2", "resource_changes": changes, "planned_values": {}, "configuration": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    plan = big_plan(args.changes)
    prices = json.loads(plan_review.DEFAULT_PRICES.read_text())
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = plan_review.review(plan, title="bench", allow_destroy=set(), prices=prices)
        parts = plan_review.split_comment(plan_review.markdown(result), "bench")
        json.dumps(result.as_dict())
        times.append(time.perf_counter() - started)
    wall = statistics.median(times)
    print(
        f"reviewed {args.changes} changes: {len(result.blocking)} blocking, "
        f"{sum(bool(p['widening']) for p in result.policies)} widening, {len(result.network)} network, "
        f"{len(parts)} comment part(s)"
    )
    print(
        f"review + markdown + JSON: {wall:.2f}s (median of {args.runs}; target < 2.00s) -> "
        f"{'OK' if wall < 2 else 'OVER TARGET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
