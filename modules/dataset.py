"""The curated detections as a table people can query: Glue catalog, Athena workgroup, saved queries.

WriteParquet writes ``s3://<curated>/<detections prefix>/month=YYYY-MM/part-*.parquet``; the Glue
table ``detections`` declares those files' columns (:data:`COLUMNS`, checked against a file the
handler writes in tests/test_dataset.py) and the ``month`` partition by projection (Athena computes
the partitions from the table properties: no crawler, no ``MSCK REPAIR``,
https://docs.aws.amazon.com/athena/latest/ug/partition-projection.html; the ``date`` type with
``yyyy-MM`` and a ``MONTHS`` interval,
https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html). The
workgroup ``<prefix>-dataset`` keeps results under ``athena-results/`` of the processed bucket,
encrypted with the pipeline key, and stops a query after ``BYTES_SCANNED_CUTOFF`` (a runaway scan
costs at most that). Whoever queries gets the customer-managed policy ``<prefix>-dataset-query``
attached: the workgroup, the catalog objects, the detections prefix and the results prefix only.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.athena_named_query import AthenaNamedQuery
from cdktf_cdktf_provider_aws.athena_workgroup import (
    AthenaWorkgroup,
    AthenaWorkgroupConfiguration,
    AthenaWorkgroupConfigurationResultConfiguration,
    AthenaWorkgroupConfigurationResultConfigurationEncryptionConfiguration,
)
from cdktf_cdktf_provider_aws.glue_catalog_database import GlueCatalogDatabase
from cdktf_cdktf_provider_aws.glue_catalog_table import (
    GlueCatalogTable,
    GlueCatalogTableStorageDescriptor,
    GlueCatalogTableStorageDescriptorColumns,
    GlueCatalogTableStorageDescriptorSerDeInfo,
)
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantablePolicy, GrantableRole, statement
from modules.secure_bucket import SecureBucket

# The Parquet columns of lambda_src/write_parquet (its SCHEMA) in Hive DDL types, in file order.
COLUMNS = {
    "execution_id": "string",
    "image_key": "string",
    "site_id": "string",
    "captured_at": "timestamp",
    "latitude": "double",
    "longitude": "double",
    "detection_index": "int",
    "category": "string",
    "score": "float",
    "bbox": "array<float>",
    "species": "string",
    "species_score": "float",
    "temperature_c": "float",
    "precipitation_mm": "float",
    "wind_speed_kmh": "float",
    "cloud_cover_pct": "float",
    "weather_status": "string",
    "record_status": "string",
}
PARTITION_KEY = "month"  # WriteParquet's month=YYYY-MM
PARQUET = {
    "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
}
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
RESULTS_PREFIX = "athena-results"
BYTES_SCANNED_CUTOFF = 50 * 1024**3  # 50 GB: ~0.25 USD at Athena's 5 USD per TB
# The months Athena projects: camera clocks reset to 1970 or 2000, or run ahead, so from 1970-01
# (also where WriteParquet puts rows without a usable capture time, record_status saying why) to a
# year past the query's date (its AHEAD_YEARS); NOW+<n>YEARS is the documented relative bound
# (https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html).
PROJECTED_MONTHS = "1970-01,NOW+1YEARS"


def recent(months: int) -> str:
    """A predicate on the partition key: the last ``months`` months (Athena reads only those)."""
    return f"{PARTITION_KEY} >= date_format(date_add('month', -{months}, current_date), '%Y-%m')"


def latest(table: str, where: str) -> str:
    """The rows of ``table`` matching ``where``, one per (image_key, detection_index): an image in
    two executions' manifests (overlapping or re-run) lands in the month twice; the row of the
    greatest execution_id counts."""
    return (
        "SELECT *, row_number() OVER (PARTITION BY image_key, detection_index ORDER BY execution_id DESC) AS copy_rank "
        f"FROM {table} WHERE {where}"
    )


def queries(table: str) -> dict[str, tuple[str, str]]:
    """The saved queries: name -> (description, SQL). Each counts an image's detection once
    however many executions wrote it (:func:`latest`)."""
    return {
        "species-per-site-per-week": (
            "Detections and images per species, site and week (classified animals, last 6 months, "
            "an image processed twice counted once)",
            f"WITH latest AS ({latest(table, f'species IS NOT NULL AND {recent(6)}')}) "
            "SELECT date_trunc('week', captured_at) AS week, site_id, species, count(*) AS detections, "
            "count(DISTINCT image_key) AS images FROM latest WHERE copy_rank = 1 "
            "GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2, 4 DESC",
        ),
        "images-without-detection": (
            "Images the detector found nothing on (one row each, detection_index empty; last 3 months)",
            f"WITH latest AS ({latest(table, f'detection_index IS NULL AND {recent(3)}')}) "
            "SELECT image_key, site_id, captured_at, weather_status, execution_id "
            "FROM latest WHERE copy_rank = 1 ORDER BY captured_at DESC",
        ),
    }


def save_queries(
    scope: Construct, prefix: str, saved: dict[str, tuple[str, str]], database: str, workgroup: str
) -> list[str]:
    """A named Athena query ``<prefix>-<name>`` per entry of ``saved`` (name -> (description, SQL));
    their names."""
    for name, (description, sql) in saved.items():
        AthenaNamedQuery(
            scope,
            f"query-{name}",
            name=f"{prefix}-{name}",
            description=description,
            database=database,
            workgroup=workgroup,
            query=sql,
        )
    return [f"{prefix}-{name}" for name in saved]


@dataclass(frozen=True)
class DatasetProps:
    prefix: str
    region: str
    account_id: str
    curated: SecureBucket
    detections_prefix: str
    results: SecureBucket  # where Athena writes query results (RESULTS_PREFIX)
    key: PipelineKey
    force_destroy: bool


class Dataset(Construct):
    def __init__(self, scope: Construct, id_: str, props: DatasetProps) -> None:
        super().__init__(scope, id_)
        self.props = props
        self.database_name = f"{props.prefix.replace('-', '_')}_dataset"
        database = GlueCatalogDatabase(
            self, "database", name=self.database_name, description="Curated camera-trap detections (WriteParquet)"
        )
        self.location = f"s3://{props.curated.bucket_name}/{props.detections_prefix}"
        self.table = GlueCatalogTable(
            self,
            "detections",
            name="detections",
            database_name=database.name,
            table_type="EXTERNAL_TABLE",
            description=(
                "One row per detection, or per image without one; month=YYYY-MM partitions, "
                "1970-01 also for rows without a usable capture time (record_status says why); an image "
                "two executions processed has a row from each: count one per (image_key, detection_index)"
            ),
            partition_keys=[{"name": PARTITION_KEY, "type": "string"}],
            parameters={
                "classification": "parquet",
                "parquet.compression": "ZSTD",
                "projection.enabled": "true",
                f"projection.{PARTITION_KEY}.type": "date",
                f"projection.{PARTITION_KEY}.format": "yyyy-MM",
                f"projection.{PARTITION_KEY}.range": PROJECTED_MONTHS,
                f"projection.{PARTITION_KEY}.interval": "1",
                f"projection.{PARTITION_KEY}.interval.unit": "MONTHS",
                # $$ : a literal ${...} for Athena, not a Terraform interpolation.
                "storage.location.template": f"{self.location}/{PARTITION_KEY}=$${{{PARTITION_KEY}}}/",
            },
            storage_descriptor=GlueCatalogTableStorageDescriptor(
                location=f"{self.location}/",
                columns=[GlueCatalogTableStorageDescriptorColumns(name=k, type=v) for k, v in COLUMNS.items()],
                ser_de_info=GlueCatalogTableStorageDescriptorSerDeInfo(serialization_library=PARQUET_SERDE),
                **PARQUET,
            ),
        )
        self.qualified_table = f"{self.database_name}.detections"
        self.workgroup = AthenaWorkgroup(
            self,
            "workgroup",
            name=f"{props.prefix}-dataset",
            description="Queries over the curated detections",
            force_destroy=props.force_destroy,
            configuration=AthenaWorkgroupConfiguration(
                enforce_workgroup_configuration=True,
                publish_cloudwatch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                result_configuration=AthenaWorkgroupConfigurationResultConfiguration(
                    output_location=f"s3://{props.results.bucket_name}/{RESULTS_PREFIX}/",
                    encryption_configuration=AthenaWorkgroupConfigurationResultConfigurationEncryptionConfiguration(
                        encryption_option="SSE_KMS", kms_key_arn=props.key.key_arn
                    ),
                ),
            ),
        )
        self.query_names = save_queries(self, props.prefix, queries("detections"), database.name, self.workgroup.name)
        self.query_policy = GrantablePolicy(
            self,
            "query-policy",
            name=f"{props.prefix}-dataset-query",
            description="Query the curated detections with Athena (attach to whoever queries)",
        )
        self.grant_query(self.query_policy)

    def grant_query(self, grantee: GrantableRole | GrantablePolicy) -> None:
        """Run and read queries in the workgroup over the table: Athena's actions on the workgroup
        (https://docs.aws.amazon.com/athena/latest/ug/workgroups-iam-policy.html), Glue reads of
        the catalog, database and table (Athena reads the catalog with the caller's rights:
        https://docs.aws.amazon.com/athena/latest/ug/fine-grained-access-to-glue-resources.html),
        the data and the results prefix (https://repost.aws/knowledge-center/athena-access-iam)."""
        p = self.props
        glue = f"arn:aws:glue:{p.region}:{p.account_id}"
        athena = [
            "athena:BatchGetNamedQuery",
            "athena:GetNamedQuery",
            "athena:GetQueryExecution",
            "athena:GetQueryResults",
            "athena:GetQueryResultsStream",
            "athena:GetWorkGroup",
            "athena:ListNamedQueries",
            "athena:ListQueryExecutions",
            "athena:StartQueryExecution",
            "athena:StopQueryExecution",
        ]
        workgroup = f"arn:aws:athena:{p.region}:{p.account_id}:workgroup/{p.prefix}-dataset"
        grantee.add_statements(
            statement(athena, [workgroup]),
            # ListWorkGroups takes no resource (Service Authorization Reference, Amazon Athena):
            # "*" is the only form; it lists names, nothing of their queries or results.
            statement(["athena:ListWorkGroups"], ["*"]),
            statement(
                # GetDatabases/GetTables: what a console or JDBC client browses (answered for these only).
                [
                    "glue:GetDatabase",
                    "glue:GetDatabases",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                ],
                [
                    f"{glue}:catalog",
                    f"{glue}:database/{self.database_name}",
                    f"{glue}:table/{self.database_name}/detections",
                ],
            ),
            statement(["s3:GetBucketLocation"], [p.curated.bucket_arn, p.results.bucket_arn]),
            statement(["s3:ListBucketMultipartUploads"], [p.results.bucket_arn]),
            statement(["s3:ListMultipartUploadParts"], [f"{p.results.bucket_arn}/{RESULTS_PREFIX}/*"]),
        )
        p.curated.grant_read(grantee, p.detections_prefix)
        p.results.grant_read(grantee, RESULTS_PREFIX)
        p.results.grant_write(grantee, RESULTS_PREFIX)
