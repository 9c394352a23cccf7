"""A failing case for every rule of conf/profile.py: each validator, each of its refusals.

``RULES`` lists every validator of the profile model (found by reading conf/profile.py, so a new
rule without a case here fails ``test_every_rule_has_a_failing_case``) with the edit that breaks it
and the one line the loader must print. Pydantic's per-field bounds (``Field(ge=..)``, patterns)
are pydantic's own; these are the rules this project wrote.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conf import ProfileError, load_profile
from tests.conftest import REPO

Edit = Callable[[Path], None]


def setting(env: str, **values: object) -> Edit:
    """Set dotted keys of ``<env>.yaml`` (None deletes the key there)."""

    def edit(profile_dir: Path) -> None:
        file = profile_dir / f"{env}.yaml"
        data = yaml.safe_load(file.read_text()) or {}
        for path, value in values.items():
            *parents, leaf = path.split("__")
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            if value is None:
                node.pop(leaf, None)
            else:
                node[leaf] = value
        file.write_text(yaml.safe_dump(data))

    return edit


# validator -> [(env, edit, what the one line says)]
RULES: dict[str, list[tuple[str, Edit, str]]] = {
    "apply": [
        ("prod", setting("prod", batch__stages={"stage1": {"gpus": 0}}), "a gpu stage needs at least 1 gpu"),
        ("prod", setting("prod", batch__stages={"stage0": {"gpus": 1}}), "a cpu stage must ask for 0 gpus"),
    ],
    "_min_not_above_max": [("dev", setting("dev", batch__min_vcpus=200), "must be <= batch.max_vcpus (100)")],
    "_desired_within_bounds": [
        ("dev", setting("dev", batch__desired_vcpus=500), "must be between batch.min_vcpus (0) and batch.max_vcpus"),
    ],
    "_known_stages": [
        ("dev", setting("dev", batch__stages={"stage9": {"vcpus": 2}}), "no Batch step 'stage9' in conf/pipeline.py"),
        (
            "dev",
            setting("dev", batch__stages={"stage1": {"images_per_second": 9.0}}),
            "images_per_second and throughput_source go together",
        ),
    ],
    "_emails": [
        ("dev", setting("dev", budget__subscribers=["alerts(at)example.org"]), "is not an e-mail address"),
    ],
    "_cloudwatch_value": [("dev", setting("dev", logs__retention_days=42), "must be one of CloudWatch's values")],
    "_not_both": [
        (
            "dev",
            setting("dev", data_lake__force_destroy=True, data_lake__prevent_destroy=True),
            "cannot be true while data_lake.force_destroy is true",
        ),
    ],
    "_archive_after_tiering": [
        (
            "dev",
            setting("dev", data_lake__intelligent_tiering_days=90, data_lake__archive_days=60),
            "must be greater than data_lake.intelligent_tiering_days (90)",
        ),
    ],
    "_all_functions": [
        ("dev", setting("defaults", functions__specs__write_parquet=None), "missing function spec(s) write_parquet"),
        (
            "dev",
            setting("dev", functions__specs__resize_images={"memory_mb": 256, "timeout_seconds": 60}),
            "no function resize_images",
        ),
    ],
    "_complete": [
        ("local", setting("local", state_backend__path=None), "a local backend needs state_backend.path"),
        ("dev", setting("dev", state_backend__bucket=None), "an s3 backend needs state_backend.bucket"),
    ],
    "_account": [("dev", setting("dev", account_id="12345"), "must be a 12-digit AWS account id")],
    "_provider_needs": [
        ("dev", setting("dev", account_id=None), "account_id = None: required when provider is aws"),
        (
            "dev",
            setting("dev", state_backend={"type": "local", "path": ".state/dev.tfstate"}),
            "must be s3 when provider is aws",
        ),
        ("local", setting("local", emulator_endpoint=None), "required when provider is local"),
        (
            "local",
            setting(
                "local", state_backend={"type": "s3", "bucket": "b-state", "key_prefix": "k", "region": "eu-north-1"}
            ),
            "must be local when provider is local",
        ),
    ],
    "_a_person_hears_alerts": [
        ("dev", setting("dev", budget__subscribers=[]), "a cloud environment needs at least one e-mail address"),
    ],
    "_concurrency_fits_the_fleet": [
        ("dev", setting("dev", workflow__max_concurrency=26), "the GPU fleet runs at most 25 stage1 jobs at once"),
    ],
    "_runnable_alarm_before_the_cancel": [
        (
            "dev",
            setting("dev", batch__runnable_timeout_seconds=1800, monitoring__runnable_alarm_minutes=30),
            "must be below batch.runnable_timeout_seconds (1800 s)",
        ),
    ],
    "_every_step_has_a_price": [
        ("dev", setting("dev", batch__gpu_instance_types=["g6.xlarge"]), "none that the price table knows fits stage1"),
        ("dev", setting("dev", region="us-west-2"), "no price table for region us-west-2"),
    ],
    "_real_instance_types": [
        ("dev", setting("dev", batch__gpu_instance_types=["g4dn.xlarge", "g4dn.bogus"]), "'g4dn.bogus' is not an EC2"),
    ],
    "_scalars_of_the_declared_kind": [
        ("dev", setting("dev", budget__amount_usd=True), "true is a boolean; this key takes a"),
        ("dev", setting("dev", budget__amount_usd="50"), "'50' is a string; this key takes a number"),
        ("dev", setting("dev", region=5), "5 is a number; this key takes a string"),
    ],
    "_replica_elsewhere": [
        ("prod", setting("prod", data_lake__replica_region="eu-north-1"), "data_lake.replica_region = 'eu-north-1'"),
    ],
}
CASES = [(name, *case) for name, cases in RULES.items() for case in cases]


def validators() -> dict[str, int]:
    """Every validator of conf/profile.py (and StageOverride.apply), with how many refusals it has."""
    tree = ast.parse((REPO / "conf" / "profile.py").read_text())
    found = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (f for f in cls.body if isinstance(f, ast.FunctionDef)):
            decorated = any("validator" in ast.unparse(d) for d in fn.decorator_list)
            raises = sum(isinstance(n, ast.Raise) for n in ast.walk(fn))
            if raises and (decorated or fn.name == "apply"):
                found[fn.name] = raises
    return found


def test_every_rule_has_a_failing_case() -> None:
    """A case per refusal of each validator, up to two (``_known_stages`` re-raises ``apply``'s,
    whose two refusals have their own cases; ``_provider_needs`` has four, all here)."""
    assert set(validators()) == set(RULES)
    for name, raises in validators().items():
        assert len(RULES[name]) >= min(raises, 2), name


@pytest.mark.parametrize(("rule", "env", "edit", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_rule_refuses_in_one_line(profile_dir: Path, rule: str, env: str, edit: Edit, expected: str) -> None:
    load_profile(env, profile_dir)  # the unedited profile loads: the edit alone breaks it
    edit(profile_dir)
    with pytest.raises(ProfileError) as info:
        load_profile(env, profile_dir)
    message = str(info.value)
    assert "\n" not in message and expected in message, (rule, message)
