"""Plan one synthesized stack and review it, or check it for drift.

    python -m tools.plan plan  cdktf.out/stacks/pipeline-dev [--out build/plan/pipeline-dev] [--no-lock]
    python -m tools.plan drift cdktf.out/stacks/pipeline-dev
    python -m tools.plan apply cdktf.out/stacks/pipeline-dev   # exactly the reviewed plan.tfplan
    (add --emulator for a stack deployed to the local emulator)

``plan`` runs ``terraform init`` (committed lock file, read-only), ``plan -out``, ``show -json``
and ``tools.plan_review``; it leaves ``tfplan``, ``plan.json``, ``plan.txt`` (Terraform's text,
sensitive values hidden), ``review.md`` and ``review.json`` in the output folder and exits like
the review (2 = blocking, 3 = REVIEW with ``--fail-on review``; destroys approved in
``plan-approvals.yaml`` pass). Only review.md, review.json and plan.txt may leave the machine:
plan.json and the tfplan hold every sensitive value in clear. ``--no-refresh``
plans against the recorded state without reading every resource back (``-refresh=false``: a
quicker review of a config change, blind to drift). ``drift`` runs
``plan -refresh-only -detailed-exitcode`` and ``tools.drift_report`` (2 = drifted).
``apply`` applies the saved ``plan.tfplan`` and nothing else: Terraform refuses it if the
state moved since the plan was made, and ``apply`` refuses it when the ``review.json`` beside it
is missing, BLOCKING (destroys nobody approved in ``plan-approvals.yaml``) or was written for
another plan (``plan_sha256``, the plan file's digest, which ``plan`` adds after the review;
``plan`` deletes the previous review before it starts). ``--no-lock`` is for
read-only roles (prod's plan role may not write the S3 lock object).
Works on any Terraform config; imports nothing of the CDKTF app.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tools import cli, drift_report, plan_review, progress, tf_validate

REPO = Path(__file__).resolve().parent.parent
LONG = {"plan", "apply", "destroy"}  # the commands that take minutes: progress and a log
APPROVALS = REPO / "plan-approvals.yaml"


class Terraform:
    """Runs terraform in one stack folder, against AWS or (``emulator=True``) the local emulator."""

    def __init__(self, stack_dir: Path, *, emulator: bool) -> None:
        self.stack_dir, self.emulator = stack_dir, emulator
        if emulator:
            from local import deploy

            self.env = deploy.emulator_env()
        else:
            self.env = dict(os.environ, TF_IN_AUTOMATION="1")

    def init(self) -> None:
        if self.emulator:
            from local import deploy

            deploy.init(self.stack_dir)
            return
        try:
            tf_validate.init(self.stack_dir, backend=True)
        except subprocess.CalledProcessError as exc:
            raise self._failed("init", exc.stderr or exc.stdout) from None

    def run(self, *args: str, ok: tuple[int, ...] = (0,), total: int | None = None) -> subprocess.CompletedProcess:
        """``terraform <args>``; plan/apply/destroy show progress and log to build/logs/ (tools.progress)."""
        cmd = ["terraform", *args]
        if args[0] in LONG:
            label = f"{self.stack_dir.name} {args[0]}"
            proc = progress.run(cmd, cwd=self.stack_dir, env=self.env, label=label, total=total, ok=ok)
        else:
            proc = subprocess.run(cmd, cwd=self.stack_dir, env=self.env, text=True, capture_output=True, check=False)
        if proc.returncode not in ok:
            raise self._failed(args[0], proc.stderr or proc.stdout)
        return proc

    def _failed(self, command: str, output: str | None) -> SystemExit:
        tail = (output or "").strip().splitlines()[-12:]
        return SystemExit(f"error: terraform {command} failed in {self.stack_dir}:\n" + "\n".join(tail))


def make_plan(tf: Terraform, out: Path, *, lock: bool, refresh_only: bool, refresh: bool = True) -> tuple[int, Path]:
    """``plan -out`` then ``show -json``; returns terraform's detailed exit code and the JSON path."""
    name = "drift" if refresh_only else "plan"
    planfile = (out / f"{name}.tfplan").resolve()
    args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", f"-out={planfile}", "-parallelism=30"]
    if refresh_only:
        args.append("-refresh-only")
    if not refresh:
        args.append("-refresh=false")
    if not lock:
        args.append("-lock=false")
    proc = tf.run(*args, ok=(0, 2))
    # What a reviewer may download: Terraform's text of the plan (the renderer `terraform show`
    # uses), every value marked sensitive printed as "(sensitive value)".
    (out / f"{name}.txt").write_text(proc.stdout)
    shown = tf.run("show", "-json", str(planfile))
    json_path = out / f"{name}.json"
    json_path.write_text(shown.stdout)
    return proc.returncode, json_path


def destroy_refusal(stack_dir: Path, confirm: str) -> str | None:
    """Why ``destroy`` must not run: a resource protected by prevent_destroy, or no confirmation."""
    config = json.loads((stack_dir / "cdk.tf.json").read_text())
    protected = sorted(
        f"{type_}.{name}"
        for type_, resources in config.get("resource", {}).items()
        for name, body in resources.items()
        if (body.get("lifecycle") or {}).get("prevent_destroy")
    )
    env = stack_dir.name.removeprefix("pipeline-")
    if protected:
        return (
            f"{stack_dir.name} protects {len(protected)} resources with prevent_destroy (e.g. {protected[0]}): "
            "make destroy-aws refuses it; its data and keys are meant to outlive any apply"
        )
    if confirm != env:
        return f"destroying {stack_dir.name} deletes everything it holds; re-run with CONFIRM={env}"
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bind_review(out: Path) -> None:
    """Record in review.json the digest of the plan file it reviewed (apply checks it)."""
    review_path = out / "review.json"
    review = json.loads(review_path.read_text())
    review["plan_sha256"] = sha256(out / "plan.tfplan")
    review_path.write_text(json.dumps(review, indent=2) + "\n")


def apply_refusal(out: Path, env: str) -> str | None:
    """Why the plan in ``out`` must not be applied: no review next to it, a review of another plan
    file, or a BLOCKING one."""
    review_path = out / "review.json"
    if not review_path.exists():
        return f"{review_path} not found: apply only a reviewed plan; run `make plan ENV={env}` first"
    review = json.loads(review_path.read_text())
    if review.get("plan_sha256") != sha256(out / "plan.tfplan"):
        return (
            f"{review_path} was written for another plan (its plan_sha256 is not the digest of "
            f"{out / 'plan.tfplan'}): run `make plan ENV={env}` again"
        )
    if review.get("verdict") != "BLOCKING":
        return None
    needed = review.get("approvals_needed") or review.get("blocking") or []
    first = needed[0]["address"] if needed else "?"
    return (
        f"{review_path} is BLOCKING ({len(needed)} change(s) nobody approved, e.g. {first}): make apply-plan "
        f"refuses it; approve them in plan-approvals.yaml (address and digest from review.json's "
        f"approvals_needed), then run `make plan ENV={env}` again"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["plan", "drift", "apply", "destroy"])
    parser.add_argument("stack_dir", type=Path)
    parser.add_argument("--out", type=Path, help="output folder (default: build/plan/<stack>)")
    parser.add_argument("--emulator", action="store_true", help="plan against the local emulator (tflocal)")
    parser.add_argument("--no-lock", action="store_true", help="do not take the state lock (read-only roles)")
    parser.add_argument(
        "--no-refresh", action="store_true", help="plan: trust the recorded state, read nothing back (no drift seen)"
    )
    parser.add_argument("--confirm", default="", help="destroy: the environment's name, typed again")
    parser.add_argument(
        "--fail-on", choices=["blocking", "review"], default="blocking", help="plan: review = exit 3 on REVIEW too"
    )
    parser.add_argument("--approvals", type=Path, default=APPROVALS, help="plan: destroys approved in the PR")
    parser.add_argument("--check-only", action="store_true", help="apply/destroy: only the refusals, no terraform")
    args = parser.parse_args(argv)
    if args.no_refresh and args.command != "plan":
        print(f"error: --no-refresh is for plan only (make plan REFRESH=false), not {args.command}", file=sys.stderr)
        return 2
    if cli.missing_stack(args.stack_dir):
        return 1
    title = args.stack_dir.name
    if args.command == "destroy":
        refusal = destroy_refusal(args.stack_dir, args.confirm)
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        if args.check_only:
            return 0
    out = args.out or REPO / "build" / "plan" / title
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "apply":
        planfile = (out / "plan.tfplan").resolve()
        if not planfile.exists():
            print(
                f"error: {planfile} not found; run `make plan` (or download the reviewed plan) first", file=sys.stderr
            )
            return 1
        refusal = apply_refusal(out, title.removeprefix("pipeline-"))
        if refusal:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
        if args.check_only:
            return 0
    tf = Terraform(args.stack_dir, emulator=args.emulator)
    tf.init()
    if args.command == "apply":
        counts = json.loads((out / "review.json").read_text()).get("counts", {})
        total = sum(counts.get(k, 0) for k in ("add", "change", "destroy")) + 2 * counts.get("replace", 0)
        proc = tf.run("apply", "-input=false", "-no-color", "-parallelism=30", str(planfile), total=total)
        print("\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith("Apply complete")))
        return 0
    if args.command == "destroy":
        proc = tf.run("destroy", "-auto-approve", "-input=false", "-no-color", "-parallelism=30")
        print("\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith("Destroy complete")))
        return 0
    if args.command == "drift":
        _, json_path = make_plan(tf, out, lock=not args.no_lock, refresh_only=True)
        return drift_report.main(
            [
                str(json_path),
                "--title",
                title,
                "--config",
                str(args.stack_dir / "cdk.tf.json"),
                "--markdown",
                str(out / "drift.md"),
                "--json",
                str(out / "drift-summary.json"),
            ]
        )
    for stale in ("review.json", "review.md"):
        (out / stale).unlink(missing_ok=True)
    _, json_path = make_plan(tf, out, lock=not args.no_lock, refresh_only=False, refresh=not args.no_refresh)
    code = plan_review.main(
        [
            str(json_path),
            *("--title", title, "--markdown", str(out / "review.md"), "--json", str(out / "review.json")),
            *("--approvals", str(args.approvals), "--fail-on", args.fail_on),
        ]
    )
    if (out / "review.json").exists():
        bind_review(out)
    print((out / "review.md").read_text())
    print(f"plan: {out}/plan.tfplan (apply exactly this with `terraform apply {out}/plan.tfplan`)", file=sys.stderr)
    return code


if __name__ == "__main__":
    cli.run(main)
