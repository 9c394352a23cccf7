"""Security gate: checkov on every synthesized stack and on plan JSON, with a justified skip list.

    python -m tools.security_scan                         # every stack in cdktf.out/stacks
    python -m tools.security_scan --stacks cdktf.out/stacks --plan build/plan/pipeline-local/plan.json

Any failed check that no entry of ``tools/checkov_skips.yaml`` covers fails the gate (exit 1);
with ``--strict-skips`` (a scan of every stack: ``make security``, ``make test``) so does an entry
that covers nothing, since a stale skip would hide the next finding. Prints passed / failed /
skipped per target and in total.

Workaround for checkov issue #7454 (its terraform_json parser crashes on a ``cdk.tf.json`` whose
``terraform`` block has ``required_version``): each stack is scanned from a copy without that one
key. Checkov has no check on the ``terraform`` block, so no check is lost; the copy is otherwise
the synthesized JSON, and a stack with resources but no check result fails the scan, so a silent
parse failure cannot pass as "0 failed". All stacks go through one checkov process, each in a
folder of its own, and the results are split by folder.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools import cli

REPO = Path(__file__).resolve().parent.parent
SKIPS = Path(__file__).resolve().parent / "checkov_skips.yaml"
CHECKOV = REPO / ".venv-scan" / "bin" / "checkov"
CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_\d+$")


class ScanError(Exception):
    """Bad skip list or a checkov that did not run; ``str()`` is the one-line message."""


@dataclass(frozen=True)
class Skip:
    check: str
    resources: tuple[str, ...]
    why: str

    def covers(self, check: str, address: str) -> bool:
        return check == self.check and any(fnmatch.fnmatchcase(address, g) for g in self.resources)


@dataclass
class Result:
    target: str
    passed: int = 0
    failed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def load_skips(path: Path = SKIPS) -> list[Skip]:
    try:
        entries = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ScanError(f"{path}: cannot read the skip list ({exc})") from None
    skips = []
    for number, entry in enumerate(entries, 1):
        where = f"{path.name} entry {number}"
        if not isinstance(entry, dict) or set(entry) - {"check", "resources", "why"}:
            raise ScanError(f"{where}: expected keys check, resources, why; got {entry!r}")
        if not CHECK_ID.match(str(entry.get("check", ""))):
            raise ScanError(f"{where}: check {entry.get('check')!r} is not a checkov id like CKV_AWS_18")
        why = str(entry.get("why") or "").strip()
        if len(why) < 20 or "\n" in why:
            raise ScanError(f"{where} ({entry['check']}): `why` must be a one-line justification (20+ characters)")
        resources = entry.get("resources") or []
        if not resources or not all(isinstance(g, str) and g for g in resources):
            raise ScanError(
                f"{where} ({entry['check']}): `resources` must list address globs, e.g. [aws_s3_bucket.x_*]"
            )
        skips.append(Skip(entry["check"], tuple(resources), why))
    return skips


def scannable_copy(config: dict) -> dict:
    """The synthesized config minus ``terraform.required_version`` (checkov #7454)."""
    copy = json.loads(json.dumps(config))
    copy.get("terraform", {}).pop("required_version", None)
    return copy


def config_addresses(config: dict) -> dict[str, str]:
    """Logical name -> ``type.name`` for resources and ``data.type.name`` for data sources.

    checkov's terraform_json runner reports some results as ``resource.<name>``; cdktf names are
    unique across types, so the name alone finds the address again.
    """
    found = {name: f"{kind}.{name}" for kind, items in config.get("resource", {}).items() for name in items}
    found |= {name: f"data.{kind}.{name}" for kind, items in config.get("data", {}).items() for name in items}
    return found


def run_checkov(checkov: Path, args: list[str], *, quiet: bool = True) -> dict:
    """One checkov process; ``quiet`` leaves the passed checks out of the report (only counted)."""
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", LOG_LEVEL="ERROR")
    flags = ["--quiet"] if quiet else ["--compact"]
    proc = subprocess.run(
        [str(checkov), *args, "--skip-download", *flags, "--output", "json", "--soft-fail"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ScanError(
            f"checkov {' '.join(args)} gave no JSON report: {(proc.stderr or proc.stdout)[-400:]}"
        ) from None
    return report[0] if isinstance(report, list) else report


def classify(
    target: str, results: dict, passed: int, names: dict[str, str], skips: list[Skip], used: set[Skip]
) -> Result:
    result = Result(target, passed=passed)
    result.skipped = [
        {"check": r["check_id"], "address": r["resource"], "by": "inline"} for r in results.get("skipped_checks", [])
    ]
    for failure in results.get("failed_checks", []):
        resource = failure["resource"]
        address = names.get(resource.split(".", 1)[1], resource) if resource.startswith("resource.") else resource
        row = {"check": failure["check_id"], "name": failure["check_name"], "address": address}
        skip = next((s for s in skips if s.covers(failure["check_id"], address)), None)
        if skip:
            used.add(skip)
            result.skipped.append(dict(row, by="skip list"))
        else:
            result.failed.append(row)
    return result


def scan_stacks(checkov: Path, stack_dirs: list[Path], skips: list[Skip], used: set[Skip]) -> list[Result]:
    """Every stack in one checkov process (its start-up is most of a one-stack scan: 8 s, against
    13 s for all seven), each from its own folder; results are split by that folder again."""
    if not stack_dirs:
        return []
    configs = {d.name: json.loads((d / "cdk.tf.json").read_text()) for d in stack_dirs}
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        for name, config in configs.items():
            (Path(tmp) / name).mkdir()
            (Path(tmp) / name / "cdk.tf.json").write_text(json.dumps(scannable_copy(config), indent=2))
        report = run_checkov(checkov, ["--directory", tmp, "--framework", "terraform_json"], quiet=False)
    found = report.get("results") or {}
    by_stack: dict[str, dict[str, list[dict]]] = {name: {} for name in configs}
    for kind, rows in found.items():
        if not isinstance(rows, list):
            continue
        for row in rows:
            stack = Path(str(row.get("file_path", ""))).parts[1:2]
            if stack and stack[0] in by_stack:
                by_stack[stack[0]].setdefault(kind, []).append(row)
    results = []
    for name, config in configs.items():
        rows = by_stack[name]
        passed = len(rows.get("passed_checks", []))
        if config.get("resource") and not (passed or rows.get("failed_checks")):
            raise ScanError(f"checkov parsed no resource of stack {name} (0 checks ran): the scan would prove nothing")
        results.append(classify(name, rows, passed, config_addresses(config), skips, used))
    return results


def scan_plan(checkov: Path, plan_json: Path, skips: list[Skip], used: set[Skip]) -> Result:
    report = run_checkov(checkov, ["--file", str(plan_json), "--framework", "terraform_plan"])
    if not (report.get("summary") or {}).get("resource_count") and json.loads(plan_json.read_text()).get(
        "planned_values"
    ):
        raise ScanError(f"checkov parsed no resource of {plan_json}: the scan would prove nothing")
    passed = (report.get("summary") or {}).get("passed", 0)
    return classify(str(plan_json), report.get("results") or {}, passed, {}, skips, used)


def verdict(results: list[Result], skips: list[Skip], used: set[Skip], *, strict_skips: bool, skips_file: Path) -> int:
    """Print each target's counts and failures; 1 when a check failed or (``strict_skips``) a skip
    covered nothing, else 0. Apart from the scan, so one scan can be judged both ways."""
    for result in results:
        print(
            f"checkov {result.target}: {result.passed} passed, "
            f"{len(result.failed)} failed, {len(result.skipped)} skipped"
        )
        for row in result.failed:
            print(f"  FAILED {row['check']} {row['address']}: {row['name']}")
    passed = sum(r.passed for r in results)
    failed = sum(len(r.failed) for r in results)
    skipped = sum(len(r.skipped) for r in results)
    print(f"checkov total: {passed} passed, {failed} failed, {skipped} skipped ({len(skips)} skip-list entries)")
    stale = [s for s in skips if s not in used] if strict_skips else []
    for skip in stale:
        print(
            f"  STALE skip {skip.check} {', '.join(skip.resources)}: covers no failed check; remove it", file=sys.stderr
        )
    if failed:
        print(
            f"security gate: {failed} failed check(s). Fix them, or add an entry with a one-line `why` to {skips_file}",
            file=sys.stderr,
        )
    return 1 if failed or stale else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.security_scan", description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=Path, default=REPO / "cdktf.out" / "stacks", help="folder of stack folders")
    parser.add_argument("--plan", type=Path, action="append", default=[], help="plan JSON to scan (repeatable)")
    parser.add_argument("--skips", type=Path, default=SKIPS)
    parser.add_argument("--strict-skips", action="store_true", help="fail on skip entries that cover nothing")
    parser.add_argument("--checkov", type=Path, default=CHECKOV if CHECKOV.exists() else None)
    args = parser.parse_args(argv)
    checkov = args.checkov or shutil.which("checkov")
    if not checkov:
        print("error: checkov not found; run `make setup` (installs it into .venv-scan)", file=sys.stderr)
        return 1
    stacks = sorted(p for p in args.stacks.glob("*") if (p / "cdk.tf.json").exists()) if args.stacks.exists() else []
    if not stacks and not args.plan:
        print(f"error: no synthesized stack in {args.stacks} and no --plan; run `make synth` first", file=sys.stderr)
        return 1
    try:
        skips = load_skips(args.skips)
        used: set[Skip] = set()
        with ThreadPoolExecutor(max_workers=2) as pool:
            every_stack = pool.submit(scan_stacks, Path(checkov), stacks, skips, used)
            plans = list(pool.map(lambda p: scan_plan(Path(checkov), p, skips, used), args.plan))
            results = every_stack.result() + plans
    except ScanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return verdict(results, skips, used, strict_skips=args.strict_skips, skips_file=args.skips)


if __name__ == "__main__":
    cli.run(main)
