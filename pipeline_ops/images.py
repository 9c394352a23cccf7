"""Build and push the Batch stage images (``make images ENV=<env>``); check ECR has them (``make images-check``).

    python -m pipeline_ops.images cdktf.out/stacks/pipeline-dev            # build + push what ECR lacks
    python -m pipeline_ops.images --check cdktf.out/stacks/pipeline-dev    # exit 1 if a tag is missing

The images come from the synthesized stack, not from Terraform state: each job definition's image
is ``<repository of this stack>:<profile tag>``, the registry is the provider's account and region.
So CI can push before the apply that references a new tag. On a first deploy the repositories do
not exist yet: those stages are reported and pushed by the next run, right after the apply. Tags
are immutable, so a tag already in ECR is never rebuilt. Building needs a Docker engine.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import cli
from tools.image_builds import dockerfile_for

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
REF = "${aws_ecr_repository."


@dataclass(frozen=True)
class StageImage:
    stage: str
    repository: str
    tag: str

    def uri(self, registry: str) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


def dockerfile_args(stage: str) -> list[str]:
    """``docker build`` arguments for a stage: its own Dockerfile, or the shared one with a STAGE build arg."""
    dockerfile = dockerfile_for(stage, IMAGES_DIR)
    if dockerfile is None:
        raise FileNotFoundError(f"images/{stage}/ (no Dockerfile builds {stage})")
    shared = dockerfile.parent == IMAGES_DIR
    return ["-f", str(dockerfile), *(["--build-arg", f"STAGE={stage}"] if shared else [])]


def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def planned_images(stack_dir: Path) -> list[StageImage]:
    """Each job definition's image as the synthesized stack names it (repository + tag)."""
    config = json.loads((stack_dir / "cdk.tf.json").read_text())
    resources = config.get("resource", {})
    repositories = resources.get("aws_ecr_repository", {})
    found = []
    for definition in resources.get("aws_batch_job_definition", {}).values():
        image = json.loads(definition["container_properties"])["image"]
        if not image.startswith(REF):
            continue
        name, _, tag = image.removeprefix(REF).partition("}")
        repository = repositories[name.split(".", 1)[0]]["name"]
        found.append(StageImage(repository.rsplit("/", 1)[-1], repository, tag.removeprefix(":")))
    return sorted(found, key=lambda i: i.stage)


def registry(ecr: Any, sts: Any) -> str:
    account = sts.get_caller_identity()["Account"]
    return f"{account}.dkr.ecr.{ecr.meta.region_name}.amazonaws.com"


def state_of(ecr: Any, image: StageImage) -> str:
    """'present', 'missing' (tag not pushed) or 'no-repository' (not created yet)."""
    try:
        ecr.describe_images(repositoryName=image.repository, imageIds=[{"imageTag": image.tag}])
    except ecr.exceptions.RepositoryNotFoundException:
        return "no-repository"
    except ecr.exceptions.ImageNotFoundException:
        return "missing"
    return "present"


def check(stack_dir: Path, ecr: Any) -> int:
    images = planned_images(stack_dir)
    absent = [f"{i.stage} {i.repository}:{i.tag}" for i in images if state_of(ecr, i) != "present"]
    if absent:
        print(
            f"error: {len(absent)} stage image(s) missing from ECR: {', '.join(absent)}; "
            "run `make images ENV=<env>` (CI's main pipeline builds and pushes them)",
            file=sys.stderr,
        )
        return 1
    print(f"images-check: all {len(images)} stage images are in ECR")
    return 0


def ecr_login(ecr: Any, host: str) -> None:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    subprocess.run(
        ["docker", "login", "--username", user, "--password-stdin", host],
        input=password,
        text=True,
        check=True,
        capture_output=True,
    )


def build_and_push(stack_dir: Path, ecr: Any, sts: Any) -> int:
    host = registry(ecr, sts)
    logged_in = False
    for image in planned_images(stack_dir):
        state = state_of(ecr, image)
        if state == "present":
            print(f"images: {image.uri(host)} is in ECR already (tags are immutable)")
            continue
        if state == "no-repository":
            print(f"images: {image.repository} does not exist yet (first deploy): push after the apply")
            continue
        if image.stage != "stage0" and not (IMAGES_DIR / "models" / image.stage).is_dir():
            print(f"error: images/models/{image.stage}/ is missing: put the stage's model files there", file=sys.stderr)
            return 2
        if not logged_in:
            ecr_login(ecr, host)
            logged_in = True
        uri = image.uri(host)
        subprocess.run(["docker", "build", *dockerfile_args(image.stage), "-t", uri, str(IMAGES_DIR)], check=True)
        subprocess.run(["docker", "push", uri], check=True)
        print(f"pushed {uri}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.images", description=__doc__.splitlines()[0])
    parser.add_argument("stack_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="only check that ECR has every stage's tag")
    parser.add_argument("--require-docker", action="store_true", help="only check that a Docker engine answers")
    args = parser.parse_args(argv)
    if not args.check and not docker_available():
        print(
            "error: no Docker engine on this machine (`docker info` failed); nothing was built or pushed; "
            "start Docker, or let CI build the images",
            file=sys.stderr,
        )
        return 2
    if args.require_docker:
        return 0
    if cli.missing_stack(args.stack_dir):
        return 2
    import boto3

    ecr = boto3.client("ecr")
    return check(args.stack_dir, ecr) if args.check else build_and_push(args.stack_dir, ecr, boto3.client("sts"))


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
