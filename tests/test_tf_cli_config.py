"""The Terraform CLI config and the shared plugin cache, with terraform itself."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local import deploy
from tools import tf_cli_config, tf_validate

pytestmark = pytest.mark.terraform

AWS_ONLY = {
    "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": "5.100.0"}}},
    "provider": {"aws": [{"region": "eu-north-1", "skip_credentials_validation": True}]},
}


def test_concurrent_inits_share_a_cold_plugin_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six inits (four plain as ``make validate`` runs them, two through tflocal as the emulator
    deploys do) filling one empty cache at once all succeed; the cache then holds the provider once
    and is marked warm for this lock file, so the next three run side by side. Unlocked, CI failed
    with "mkdir .../plugin-cache/...: file exists" and eight such inits failed in 2 of 8 rounds
    here ("still not detected in .terraform/providers")."""
    rc = tmp_path / "terraformrc"
    assert tf_cli_config.main([str(rc)]) == 0
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(rc))
    cache = tf_cli_config.plugin_cache_dir()
    assert cache == tmp_path / "plugin-cache" and not any(cache.iterdir())
    # The race is in filling the cache (six); a warm cache is only read (three: ~2 CPU s per init).
    for round_, plain, through_tflocal in (("cold", 4, 2), ("warm", 2, 1)):
        stacks = []
        for index in range(plain + through_tflocal):
            stack = tmp_path / round_ / f"stack{index}"
            stack.mkdir(parents=True)
            (stack / "cdk.tf.json").write_text(json.dumps(AWS_ONLY))
            stacks.append(stack)
        with ThreadPoolExecutor(len(stacks)) as pool:
            [*pool.map(tf_validate.init, stacks[:plain]), *pool.map(deploy.init, stacks[plain:])]
        installed = list(cache.glob("registry.terraform.io/hashicorp/aws/*/*"))
        assert [p.parent.name for p in installed] == ["5.100.0"]
        assert len(list(cache.glob(".warm-*"))) == 1
        for stack in stacks:
            assert (stack / ".terraform" / "providers" / "registry.terraform.io" / "hashicorp" / "aws").is_dir()


def test_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text('plugin_cache_dir = "/somewhere/cache"\n')
    assert tf_cli_config.plugin_cache_dir({"TF_CLI_CONFIG_FILE": str(rc)}) == Path("/somewhere/cache")
    assert tf_cli_config.plugin_cache_dir({"TF_PLUGIN_CACHE_DIR": "/x", "TF_CLI_CONFIG_FILE": str(rc)}) == Path("/x")
    assert tf_cli_config.plugin_cache_dir({"TF_CLI_CONFIG_FILE": str(tmp_path / "missing")}) is None
