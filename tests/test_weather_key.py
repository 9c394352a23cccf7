"""``make weather-key``: the weather API key is written as a SecureString with the pipeline key,
from stdin only, and read back decrypted by whoever holds kms:Decrypt (the weather function)."""

from __future__ import annotations

import io

import boto3
import pytest
from moto import mock_aws

from pipeline_ops import weather_key


@pytest.fixture
def pipeline_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        kms = boto3.client("kms", region_name="eu-north-1")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/odins-ravne-dev-pipeline", TargetKeyId=key)
        yield key


def run(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return weather_key.main(list(argv))


def test_sets_and_rotates_the_key_from_stdin(pipeline_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ssm = boto3.client("ssm", region_name="eu-north-1")
    name = "/odins-ravne/dev/secrets/weather-api-key"
    for value in ("first-key", "rotated-key"):
        assert run(monkeypatch, value + "\n", "dev") == 0
        parameter = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        assert (parameter["Type"], parameter["Value"]) == ("SecureString", value)
    (described,) = ssm.describe_parameters()["Parameters"]
    assert described["KeyId"] == "alias/odins-ravne-dev-pipeline"


def test_refuses_a_value_on_the_command_line_and_an_empty_one(
    pipeline_key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert run(monkeypatch, "", "dev", "the-key-itself") == 2
    assert run(monkeypatch, "  \n", "dev") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage:") and err[1].startswith("error: no key given")
    assert not boto3.client("ssm", region_name="eu-north-1").describe_parameters()["Parameters"]


def test_health_says_whether_the_key_is_set(pipeline_key: str) -> None:
    from pipeline_ops import health

    name = weather_key.parameter_name("odins-ravne", "dev")
    function = {"environment": [{"variables": {"WEATHER_API_KEY_PARAMETER": name, "WEATHER_MAX_RETRIES": "3"}}]}
    state = [{"mode": "managed", "type": "aws_lambda_function", "values": function}]
    ssm = boto3.client("ssm", region_name="eu-north-1")
    assert health.secret_lines(state, ssm) == [(True, f"secret {name}: NOT SET (make weather-key ENV=<env>)")]
    weather_key.put(ssm, name, "alias/odins-ravne-dev-pipeline", "a-key")
    assert health.secret_lines(state, ssm) == [(True, f"secret {name}: set")]
