"""The curated detections as a queryable table: the Glue table against the Parquet WriteParquet
really writes, its partition projection against the object keys, the saved Athena queries, and the
query policy's scope (modules/dataset.py).
WriteParquet's event is the one its state sends (tests/events.py, the documented context object:
https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html).
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from tests.conftest import SynthResult
from tests.test_handlers import ENRICHED, REGION, curated_buckets, parquet, sharded_event

CLOUD = ("dev", "staging", "prod")


def hive_type(arrow: pa.DataType) -> str:
    """The Hive DDL type Athena reads a Parquet column of this Arrow type as
    (https://docs.aws.amazon.com/athena/latest/ug/data-types.html)."""
    if pa.types.is_list(arrow):
        return f"array<{hive_type(arrow.value_type)}>"
    simple = {
        pa.string(): "string",
        pa.float64(): "double",
        pa.float32(): "float",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.bool_(): "boolean",
    }
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    return simple[arrow]


def named(synth: SynthResult, env: str, reference: str) -> str:
    """The name of the resource a ``${<type>.<id>.name}`` reference points at."""
    type_, ident = re.fullmatch(r"\$\{(\w+)\.([^.]+)\.name\}", reference).groups()
    return synth.resources(env, type_)[ident]["name"]


def detections_table(synth: SynthResult, env: str) -> dict:
    [table] = [t for t in synth.resources(env, "aws_glue_catalog_table").values() if t["name"] == "detections"]
    return table


@pytest.fixture
def written(synth: SynthResult, monkeypatch: pytest.MonkeyPatch) -> tuple[str, pa.Schema]:
    """A file the handler writes (moto S3): its key and the schema pyarrow reads from it."""
    with mock_aws():
        s3 = curated_buckets(monkeypatch)
        s3.put_object(Bucket="proc", Key="weather/ex1/shard-0.json", Body=json.dumps({"records": ENRICHED}))
        assert parquet.handler(sharded_event(synth, "WriteParquet", "ex1", 1), None, s3=s3)["objects"] == 1
        [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="cur")["Contents"]]
        body = boto3.client("s3", region_name=REGION).get_object(Bucket="cur", Key=key)["Body"].read()
    return key, pq.ParquetFile(io.BytesIO(body)).schema_arrow


@pytest.mark.parametrize("env", CLOUD)
def test_the_table_reads_the_parquet_the_handler_writes(synth: SynthResult, env: str, written) -> None:
    key, schema = written
    table = detections_table(synth, env)
    descriptor = table["storage_descriptor"]
    columns = [(c["name"], c["type"]) for c in descriptor["columns"]]
    assert columns == [(f.name, hive_type(f.type)) for f in schema], "columns, types and order of the file"
    assert descriptor["ser_de_info"]["serialization_library"].endswith("ParquetHiveSerDe")
    [partition] = table["partition_keys"]
    assert partition == {"name": "month", "type": "string"} and "month" not in schema.names
    # The handler's key under the table's location matches the projection's template and format.
    params = table["parameters"]
    prefix = descriptor["location"].split("/", 3)[3]  # s3://<bucket>/<prefix>
    assert key.startswith(prefix)
    template = params["storage.location.template"].replace("$${month}", "(?P<month>[^/]+)")
    relative = template.split("/", 3)[3]  # the bucket name is a token: compare the path
    match = re.match(relative, key)
    assert match, f"{key} is not under {params['storage.location.template']}"
    assert params["projection.enabled"] == "true" and params["projection.month.type"] == "date"
    assert params["projection.month.format"] == "yyyy-MM" and re.fullmatch(r"\d{4}-\d{2}", match["month"])
    assert params["projection.month.interval.unit"] == "MONTHS"
    assert params["projection.month.range"].split(",")[0] <= match["month"]


def projected(range_text: str, now: datetime) -> tuple[str, str]:
    """First and last month of a date projection's ``range`` (a yyyy-MM date or NOW with an
    optional +/-<n>YEARS|MONTHS offset), as Athena evaluates it at ``now``
    (https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html)."""

    def month(bound: str) -> str:
        relative = re.fullmatch(r"NOW(?:([+-])(\d+)(YEARS|MONTHS))?", bound)
        if not relative:
            assert re.fullmatch(r"\d{4}-\d{2}", bound), bound
            return bound
        sign, count, unit = relative.groups()
        months = now.year * 12 + now.month - 1
        if sign:
            months += (1 if sign == "+" else -1) * int(count) * (12 if unit == "YEARS" else 1)
        return f"{months // 12:04d}-{months % 12 + 1:02d}"

    first, last = range_text.split(",")
    return month(first.strip()), month(last.strip())


@pytest.mark.parametrize("env", CLOUD)
def test_every_month_the_handler_writes_is_projected(synth: SynthResult, env: str) -> None:
    """Camera clocks reset to 1970 or 2000, run ahead, or give nothing: every partition the
    handler can write lies in the projected range, else Athena never reads it."""
    first, last = projected(detections_table(synth, env)["parameters"]["projection.month.range"], datetime.now(UTC))
    now = datetime.now(UTC)
    moments = [None, datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC)]
    moments += [now, now.replace(year=now.year + 1, day=1), datetime(9999, 12, 31, tzinfo=UTC)]
    for moment in moments:
        assert first <= parquet.month_of(moment) <= last, (moment, parquet.month_of(moment), first, last)
    assert parquet.month_of(datetime(2000, 1, 5, tzinfo=UTC)) == "2000-01", "an old date keeps its month"


def test_the_table_and_its_queries_are_in_every_cloud_env_only(synth: SynthResult) -> None:
    for env in CLOUD:
        assert named(synth, env, detections_table(synth, env)["database_name"]) == f"odins_ravne_{env}_dataset"
    assert not synth.resources("local", "aws_glue_catalog_table"), "local: data_lake.catalog is off"


@pytest.mark.parametrize("env", CLOUD)
def test_saved_queries_parse_and_read_only_the_table(synth: SynthResult, env: str) -> None:
    """Each saved query parses as Athena (Trino) SQL, reads the detections table only, names only
    its columns, and limits the partitions it reads."""
    import sqlglot
    from sqlglot import exp

    table = detections_table(synth, env)
    known = {c["name"] for c in table["storage_descriptor"]["columns"]} | {"month"}
    workgroup = f"odins-ravne-{env}-dataset"
    saved = {
        q["name"].removeprefix(f"odins-ravne-{env}-"): q
        for q in synth.resources(env, "aws_athena_named_query").values()
        if named(synth, env, q["workgroup"]) == workgroup
    }
    assert set(saved) == {"species-per-site-per-week", "images-without-detection"}
    for name, query in saved.items():
        for dialect in ("athena", "trino"):
            tree = sqlglot.parse_one(query["query"], read=dialect)
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        assert {t.name for t in tree.find_all(exp.Table)} - ctes == {"detections"}
        aliases = {a.alias for a in tree.find_all(exp.Alias)}
        assert {c.name for c in tree.find_all(exp.Column)} <= known | aliases, name
        assert "month >= date_format(" in query["query"], f"{name} reads every partition"
        assert named(synth, env, query["database"]) == f"odins_ravne_{env}_dataset"
        # An image two executions wrote is one (image_key, detection_index): counted once.
        [window] = list(tree.find_all(exp.Window))
        assert {c.name for c in window.args["partition_by"]} == {"image_key", "detection_index"}, name
        assert "copy_rank = 1" in tree.sql(dialect="athena"), name
    week = sqlglot.parse_one(saved["species-per-site-per-week"]["query"], read="athena")
    assert [e.sql() for e in week.args["group"].expressions] == ["1", "2", "3"]
    assert "detection_index IS NULL" in saved["images-without-detection"]["query"]


@pytest.mark.parametrize("env", CLOUD)
def test_the_workgroup_encrypts_results_and_caps_a_scan(synth: SynthResult, env: str) -> None:
    [workgroup] = [
        w for w in synth.resources(env, "aws_athena_workgroup").values() if w["name"] == f"odins-ravne-{env}-dataset"
    ]
    config = workgroup["configuration"]
    assert config["enforce_workgroup_configuration"] is True
    assert config["bytes_scanned_cutoff_per_query"] >= 10 * 1024**2  # the API's minimum, 10 MB
    results = config["result_configuration"]
    assert results["output_location"].endswith("/athena-results/") and "processed" in results["output_location"]
    assert results["encryption_configuration"]["encryption_option"] == "SSE_KMS"
    assert "aws_kms_key" in results["encryption_configuration"]["kms_key_arn"]


@pytest.mark.parametrize("env", CLOUD)
def test_the_query_policy_is_scoped(synth: SynthResult, env: str) -> None:
    """Whoever queries attaches one policy: the workgroup, the catalog objects, the detections and
    the results prefixes, the pipeline key; no wildcard resource."""
    [policy] = [p for p in synth.resources(env, "aws_iam_policy").values() if p["name"].endswith("-dataset-query")]
    statements = json.loads(policy["policy"])["Statement"]
    actions = {a: s["Resource"] for s in statements for a in s["Action"]}
    # Only ListWorkGroups (no resource type) may name "*"; a console or JDBC client browses too.
    assert {a for a, rs in actions.items() if "*" in rs} == {"athena:ListWorkGroups"}
    assert {"glue:GetDatabases", "glue:GetTables"} <= set(actions)
    account = {"dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}[env]
    assert actions["athena:StartQueryExecution"] == [
        f"arn:aws:athena:eu-north-1:{account}:workgroup/odins-ravne-{env}-dataset"
    ]
    assert f"arn:aws:glue:eu-north-1:{account}:table/odins_ravne_{env}_dataset/detections" in actions["glue:GetTable"]
    get_objects = [s["Resource"] for s in statements if "s3:GetObject" in s["Action"]]
    assert sorted(r.rsplit("}", 1)[-1] for rs in get_objects for r in rs) == ["/athena-results/*", "/detections/*"]
    assert [r.rsplit("}", 1)[-1] for s in statements if "s3:PutObject" in s["Action"] for r in s["Resource"]] == [
        "/athena-results/*"
    ]
    assert any("kms:Decrypt" in s["Action"] for s in statements)
