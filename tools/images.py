"""Build the Batch stage images and push them to their ECR repositories (``make images ENV=<env>``).

Reads the deployed stack's ``stage_images`` output (``<repo-url>:<tag>`` per stage), so it works
on any environment that has been applied; needs a Docker engine and says so when there is none.

    python -m tools.images cdktf.out/stacks/pipeline-dev
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from tools import cli

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"


def dockerfile_args(stage: str) -> list[str]:
    """stage0 has its own Dockerfile; the GPU stages share gpu.Dockerfile with a STAGE build arg."""
    own = IMAGES_DIR / stage / "Dockerfile"
    if own.exists():
        return ["-f", str(own)]
    return ["-f", str(IMAGES_DIR / "gpu.Dockerfile"), "--build-arg", f"STAGE={stage}"]


def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def stage_images(stack_dir: Path) -> dict[str, str]:
    proc = subprocess.run(
        ["terraform", "output", "-json", "stage_images"], cwd=stack_dir, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"error: no stage_images output in {stack_dir}; deploy the env first ({proc.stderr.strip()})")
    return json.loads(proc.stdout)


def ecr_login(registry: str) -> None:
    import boto3

    token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    subprocess.run(
        ["docker", "login", "--username", user, "--password-stdin", registry],
        input=password,
        text=True,
        check=True,
        capture_output=True,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.images <stack-dir>", file=sys.stderr)
        return 2
    if not docker_available():
        print(
            "error: no Docker engine on this machine (`docker info` failed); nothing was built or pushed; "
            "start Docker, or let CI build the images",
            file=sys.stderr,
        )
        return 2
    if cli.missing_stack(argv[0]):
        return 2
    images = stage_images(Path(argv[0]))
    for stage, uri in sorted(images.items()):
        missing = [] if stage == "stage0" else [p for p in ("models",) if not (IMAGES_DIR / p / stage).is_dir()]
        if missing:
            print(f"error: images/models/{stage}/ is missing: put the stage's model files there", file=sys.stderr)
            return 2
        ecr_login(uri.split("/", 1)[0])
        subprocess.run(["docker", "build", *dockerfile_args(stage), "-t", uri, str(IMAGES_DIR)], check=True)
        subprocess.run(["docker", "push", uri], check=True)
        print(f"pushed {uri}")
    return 0


if __name__ == "__main__":
    cli.run(main, sys.argv[1:])
