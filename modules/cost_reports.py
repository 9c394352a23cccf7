"""Cost reports: a CUR 2.0 data export into a bucket of its own, and saved Athena queries over it.

The seed asks for daily, weekly and monthly cost reports and spot savings. AWS Data Exports
delivers the Cost and Usage Report 2.0 (daily granularity, resource ids, split cost allocation
data, so each Batch job's share of its instance is a line of its own) as Parquet; a Glue table with
partition projection reads it without a crawler, and named Athena queries (workgroup
``<prefix>-cost``, results encrypted, in the same bucket) give: cost per day, week and month of
this environment, cost per stage (the ``Stage`` tag the job definitions propagate to their ECS
tasks), cost per 1,000 images (joined with the curated detections), and spot savings (on-demand
equivalent minus what was paid). Data Exports lives in us-east-1, so the export takes that
region's provider; the bucket (SSE-S3, which the delivery supports) admits the two billing
services for this account's export only.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import TerraformProvider
from cdktf_cdktf_provider_aws.athena_workgroup import (
    AthenaWorkgroup,
    AthenaWorkgroupConfiguration,
    AthenaWorkgroupConfigurationResultConfiguration,
    AthenaWorkgroupConfigurationResultConfigurationEncryptionConfiguration,
)
from cdktf_cdktf_provider_aws.bcmdataexports_export import (
    BcmdataexportsExport,
    BcmdataexportsExportExport,
    BcmdataexportsExportExportDataQuery,
    BcmdataexportsExportExportDestinationConfigurations,
    BcmdataexportsExportExportDestinationConfigurationsS3Destination,
    BcmdataexportsExportExportDestinationConfigurationsS3DestinationS3OutputConfigurations,
    BcmdataexportsExportExportRefreshCadence,
)
from cdktf_cdktf_provider_aws.glue_catalog_database import GlueCatalogDatabase
from cdktf_cdktf_provider_aws.glue_catalog_table import (
    GlueCatalogTable,
    GlueCatalogTableStorageDescriptor,
    GlueCatalogTableStorageDescriptorColumns,
    GlueCatalogTableStorageDescriptorSerDeInfo,
)
from constructs import Construct

from modules.dataset import save_queries
from modules.secure_bucket import SecureBucket, SecureBucketProps, housekeeping_rules

# The CUR 2.0 columns the queries need (Data Exports takes no SELECT *).
CUR_COLUMNS = {
    "bill_billing_period_start_date": "timestamp",
    "line_item_usage_start_date": "timestamp",
    "line_item_product_code": "string",
    "line_item_usage_type": "string",
    "line_item_line_item_type": "string",
    "line_item_resource_id": "string",
    "line_item_usage_amount": "double",
    "line_item_unblended_cost": "double",
    "pricing_public_on_demand_cost": "double",
    "resource_tags": "map<string,string>",
    "split_line_item_parent_resource_id": "string",
    "split_line_item_split_cost": "double",
    "split_line_item_unused_cost": "double",
}
PARQUET = {
    "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "output_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "ser_de_info": GlueCatalogTableStorageDescriptorSerDeInfo(
        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    ),
}


def tag(name: str) -> str:
    """A resource tag's value, whichever spelling CUR gives its key (``user_x``, ``user:X``)."""
    return f"element_at(transform_keys(resource_tags, (k, v) -> lower(replace(k, ':', '_'))), 'user_{name.lower()}')"


@dataclass(frozen=True)
class CostReportsProps:
    prefix: str
    environment: str
    account_id: str
    region: str
    log_target: SecureBucket
    detections_table: str | None  # <database>.<table> of the curated detections (modules/dataset.py), if any
    billing_provider: TerraformProvider  # us-east-1, where Data Exports lives
    force_destroy: bool
    prevent_destroy: bool


class CostReports(Construct):
    def __init__(self, scope: Construct, id_: str, props: CostReportsProps) -> None:
        super().__init__(scope, id_)
        name = f"{props.prefix}-cur2"
        export_arn = f"arn:aws:bcm-data-exports:us-east-1:{props.account_id}:export/{name}-*"
        bucket_name = f"{props.prefix}-cost-reports-{props.account_id}"
        self.bucket = SecureBucket(
            self,
            "cost-reports",
            SecureBucketProps(
                bucket_name=bucket_name,
                key=None,
                force_destroy=props.force_destroy,
                prevent_destroy=props.prevent_destroy,
                log_target=props.log_target,
                log_prefix=f"{bucket_name}/",
                lifecycle_rules=housekeeping_rules(7, 30),
                extra_policy_statements=(
                    {
                        "Sid": "BillingDataExportsDeliver",
                        "Effect": "Allow",
                        "Principal": {"Service": ["bcm-data-exports.amazonaws.com", "billingreports.amazonaws.com"]},
                        "Action": ["s3:PutObject", "s3:GetBucketPolicy"],
                        "Resource": [f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/cur2/*"],
                        "Condition": {
                            "StringLike": {
                                "aws:SourceAccount": props.account_id,
                                "aws:SourceArn": [
                                    export_arn,
                                    f"arn:aws:cur:us-east-1:{props.account_id}:definition/*",
                                ],
                            }
                        },
                    },
                ),
            ),
        )
        columns = ", ".join(CUR_COLUMNS)
        self.export = BcmdataexportsExport(
            self,
            "export",
            provider=props.billing_provider,
            export=[
                BcmdataexportsExportExport(
                    name=name,
                    description=f"CUR 2.0 of {props.environment}: daily, resource ids, split cost allocation",
                    data_query=[
                        BcmdataexportsExportExportDataQuery(
                            query_statement=f"SELECT {columns} FROM COST_AND_USAGE_REPORT",
                            table_configurations={
                                "COST_AND_USAGE_REPORT": {
                                    "TIME_GRANULARITY": "DAILY",
                                    "INCLUDE_RESOURCES": "TRUE",
                                    "INCLUDE_SPLIT_COST_ALLOCATION_DATA": "TRUE",
                                    "INCLUDE_MANUAL_DISCOUNT_COMPATIBILITY": "FALSE",
                                }
                            },
                        )
                    ],
                    destination_configurations=[
                        BcmdataexportsExportExportDestinationConfigurations(
                            s3_destination=[
                                BcmdataexportsExportExportDestinationConfigurationsS3Destination(
                                    s3_bucket=bucket_name,
                                    s3_prefix="cur2",
                                    s3_region=props.region,
                                    s3_output_configurations=[
                                        BcmdataexportsExportExportDestinationConfigurationsS3DestinationS3OutputConfigurations(
                                            compression="PARQUET",
                                            format="PARQUET",
                                            output_type="CUSTOM",
                                            overwrite="OVERWRITE_REPORT",
                                        )
                                    ],
                                )
                            ]
                        )
                    ],
                    refresh_cadence=[BcmdataexportsExportExportRefreshCadence(frequency="SYNCHRONOUS")],
                )
            ],
            depends_on=[self.bucket.policy],
        )
        database = GlueCatalogDatabase(self, "database", name=f"{props.prefix.replace('-', '_')}_cost")
        self.database_name: str = database.name
        location = f"s3://{bucket_name}/cur2/{name}/data"
        GlueCatalogTable(
            self,
            "cur-table",
            name="cur2",
            database_name=database.name,
            table_type="EXTERNAL_TABLE",
            partition_keys=[{"name": "billing_period", "type": "string"}],
            parameters={
                "classification": "parquet",
                "projection.enabled": "true",
                "projection.billing_period.type": "date",
                "projection.billing_period.format": "yyyy-MM",
                "projection.billing_period.range": "2025-01,NOW",
                "projection.billing_period.interval": "1",
                "projection.billing_period.interval.unit": "MONTHS",
                # $$ : a literal ${...} for Athena, not a Terraform interpolation.
                "storage.location.template": f"{location}/BILLING_PERIOD=$${{billing_period}}",
            },
            storage_descriptor=GlueCatalogTableStorageDescriptor(
                location=location,
                columns=[GlueCatalogTableStorageDescriptorColumns(name=k, type=v) for k, v in CUR_COLUMNS.items()],
                **PARQUET,
            ),
        )
        self.workgroup = AthenaWorkgroup(
            self,
            "workgroup",
            name=f"{props.prefix}-cost",
            force_destroy=props.force_destroy,
            configuration=AthenaWorkgroupConfiguration(
                enforce_workgroup_configuration=True,
                publish_cloudwatch_metrics_enabled=True,
                result_configuration=AthenaWorkgroupConfigurationResultConfiguration(
                    output_location=f"s3://{bucket_name}/athena-results/",
                    encryption_configuration=AthenaWorkgroupConfigurationResultConfigurationEncryptionConfiguration(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        saved = self.queries(props.environment, props.detections_table)
        self.names = save_queries(self, props.prefix, saved, database.name, self.workgroup.name)

    @staticmethod
    def queries(environment: str, detections_table: str | None) -> dict[str, tuple[str, str]]:
        """The saved queries: name -> (description, SQL), every one limited to this environment;
        cost per 1,000 images where the curated detections have a table."""
        mine = f"{tag('Environment')} = '{environment}'"
        cost = "line_item_unblended_cost"
        period = {
            "daily": ("day", 35),
            "weekly": ("week", 16 * 7),
            "monthly": ("month", 400),
        }
        out = {}
        for name, (unit, days) in period.items():
            out[f"cost-{name}"] = (
                f"Cost of {environment} per {unit}, by service",
                f"SELECT date_trunc('{unit}', line_item_usage_start_date) AS {unit}, "
                "line_item_product_code AS service, "
                f"round(sum({cost}), 2) AS usd FROM cur2 WHERE {mine} "
                f"AND line_item_usage_start_date >= current_date - interval '{days}' day "
                f"GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC",
            )
        out["cost-per-stage"] = (
            f"Batch cost of {environment} per stage and day: each job's split of its instance (split cost "
            "allocation data) by the Stage tag the job definitions propagate",
            f"SELECT date_trunc('day', line_item_usage_start_date) AS day, {tag('Stage')} AS stage, "
            "round(sum(split_line_item_split_cost), 4) AS usd, round(sum(split_line_item_unused_cost), 4) AS idle_usd "
            f"FROM cur2 WHERE {mine} AND split_line_item_parent_resource_id IS NOT NULL "
            "AND line_item_usage_start_date >= current_date - interval '35' day GROUP BY 1, 2 ORDER BY 1 DESC, 2",
        )
        if detections_table:
            out["cost-per-1000-images"] = (
                f"Cost of {environment} per day and per 1,000 images processed that day (curated detections)",
                "WITH spend AS (SELECT date_trunc('day', line_item_usage_start_date) AS day, "
                f"sum(line_item_unblended_cost) AS usd FROM cur2 WHERE {mine} "
                "AND line_item_usage_start_date >= current_date - interval '35' day GROUP BY 1), "
                "images AS (SELECT date_trunc('day', captured_at) AS day, count(DISTINCT image_key) AS n "
                f"FROM {detections_table} GROUP BY 1) "
                "SELECT spend.day, round(spend.usd, 2) AS usd, images.n AS images, "
                "round(1000 * spend.usd / nullif(images.n, 0), 4) AS usd_per_1000_images "
                "FROM spend LEFT JOIN images ON spend.day = images.day ORDER BY 1 DESC",
            )
        out["spot-savings"] = (
            f"Spot savings of {environment} per day: the on-demand equivalent minus what was paid",
            "SELECT date_trunc('day', line_item_usage_start_date) AS day, "
            "round(sum(pricing_public_on_demand_cost), 2) AS on_demand_usd, "
            "round(sum(line_item_unblended_cost), 2) AS paid_usd, "
            "round(sum(pricing_public_on_demand_cost - line_item_unblended_cost), 2) AS saved_usd "
            f"FROM cur2 WHERE {mine} AND line_item_usage_type LIKE '%SpotUsage%' "
            "AND line_item_usage_start_date >= current_date - interval '35' day GROUP BY 1 ORDER BY 1 DESC",
        )
        return out
