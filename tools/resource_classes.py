"""Every AWS resource type classified: stateful, stateless or unknown (what a destroy of it loses).

    python -m tools.resource_classes                 # regenerate tools/resource_classes.json
    python -m tools.resource_classes --check         # exit 1 if the table and the schema differ

The table is generated from the mirrored provider's own schema (``terraform providers schema
-json`` of hashicorp/aws at the version the lock file pins) with the rule below, and committed
with both, so a reviewer sees the class of every type and a provider upgrade shows new types.

The rule, first match wins:

1. stateful: the type holds data or an identity that its destroy loses and no apply brings back:
   stores, databases, file systems, volumes, snapshots, images, streams, queues, vaults, search
   domains, keys, secrets, parameters, certificates, user and identity pools, registries, log
   groups, repositories, ledgers, DNS zones and public addresses (``STATEFUL`` patterns), and the
   types re-checked inside the stateless families, each with what it loses (``STATEFUL_TYPES``);
2. stateless: configuration that an apply recreates from the code as it was: policies,
   attachments, associations, rules, settings, notifications, targets and whole families of
   pure configuration (``STATELESS_SUFFIXES``, ``STATELESS_FAMILY_REASONS``: why, per family);
3. unknown: everything else. The plan review treats a destroy or replace of an unknown type as
   needing review ("unclassified type"), never as safe; types of any other provider are unknown
   (``provider_name`` in any form Terraform writes for hashicorp/aws counts as aws: ``AWS_NAMES``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from tools import cli

REPO = Path(__file__).resolve().parent.parent
TABLE = Path(__file__).resolve().parent / "resource_classes.json"
PROVIDER = "registry.terraform.io/hashicorp/aws"

STATEFUL = [
    r"s3_bucket|s3control_bucket|s3_directory_bucket|s3tables_(table|table_bucket|namespace)",
    r"efs_file_system|fsx_\w+_file_system|fsx_\w*volume|fsx_backup|ebs_volume|ebs_snapshot(_copy|_import)?",
    r"ami(_copy|_from_instance)?|glacier_vault|backup_vault|backup_logically_air_gapped_vault",
    r"storagegateway_\w*volume|storagegateway_gateway|instance|spot_instance_request|lightsail_(instance|disk|database|bucket)",
    r"db_instance|db_snapshot(_copy)?|db_cluster_snapshot|rds_cluster|rds_global_cluster|rds_cluster_snapshot_copy",
    r"docdb_(cluster|global_cluster|elastic_cluster|cluster_snapshot)|neptune_(cluster|global_cluster|cluster_snapshot)",
    r"neptunegraph_graph|dynamodb_(table|global_table|table_replica)|dax_cluster|dsql_cluster",
    r"elasticache_(cluster|replication_group|serverless_cache|global_replication_group|snapshot)",
    r"memorydb_(cluster|multi_region_cluster|snapshot)|redshift_(cluster|cluster_snapshot|snapshot_copy)",
    r"redshiftserverless_(namespace|snapshot)|keyspaces_(keyspace|table)|timestreamwrite_(database|table)",
    r"timestreaminfluxdb_db_instance|qldb_ledger|(opensearch|elasticsearch)_domain|opensearchserverless_collection",
    r"cloudsearch_domain|simpledb_domain|kendra_index|kinesis_stream|kinesis_video_stream|msk_(cluster|serverless_cluster)",
    r"mq_broker|sqs_queue|kms_(key|replica_key|external_key|replica_external_key)",
    r"secretsmanager_secret|secretsmanager_secret_version|ssm_parameter|acm_certificate|acmpca_certificate_authority",
    r"acmpca_certificate|iam_server_certificate|iot_certificate|cognito_user_pool|cognito_identity_pool|iam_user",
    r"iam_access_key|key_pair|cloudhsm_v2_(cluster|hsm)|directory_service_directory|eip|lightsail_static_ip",
    r"globalaccelerator_(accelerator|custom_routing_accelerator)|route53_zone|route53domains_registered_domain",
    r"organizations_account|ecr_repository|ecrpublic_repository|cloudwatch_log_group|codecommit_repository",
    r"codeartifact_(repository|domain)|cloudtrail_event_data_store|glue_catalog_(database|table)|athena_database",
    r"sagemaker_(domain|feature_group|model_package_group|notebook_instance)|workspaces_workspace|grafana_workspace",
    r"datazone_domain|location_tracker|ivs_recording_configuration|transfer_server|lakeformation_resource",
    r"paymentcryptography_key|codecatalyst_source_repository|dataexchange_data_set|media_store_container",
    r"pinpointsmsvoicev2_phone_number|identitystore_user|customerprofiles_domain|schemas_registry",
    r"emr_studio|emrserverless_application|appstream_image_builder|finspace_kx_(database|volume|environment)",
]
STATELESS_SUFFIXES = (
    "_policy",
    "_policies",
    "_attachment",
    "_association",
    "_associations",
    "_rule",
    "_rules",
    "_rule_group",
    "_configuration",
    "_config",
    "_permission",
    "_permissions",
    "_subscription",
    "_subscriber",
    "_alias",
    "_tag",
    "_tags",
    "_setting",
    "_settings",
    "_notification",
    "_target",
    "_targets",
    "_route",
    "_routes",
    "_integration",
    "_integration_response",
    "_response",
    "_deployment",
    "_stage",
    "_trigger",
    "_membership",
    "_invitation",
    "_invitation_accepter",
    "_accepter",
    "_member",
    "_grant",
    "_schedule",
    "_registration",
    "_authorizer",
    "_authorization",
    "_document",
    "_acl",
    "_ownership_controls",
    "_public_access_block",
    "_versioning",
    "_logging",
    "_encryption",
    "_option",
    "_options",
    "_listener",
    "_record",
    "_records",
    "_webhook",
    "_model",
    "_method",
    "_resource",
    "_dashboard",
    "_alarm",
    "_filter",
    "_metric_filter",
    "_template",
    "_parameter_group",
    "_subnet_group",
    "_option_group",
    "_profile",
    "_role",
    "_group",
    "_version",
    "_lock",
    "_account",
    "_delegated_administrator",
    "_admin_account",
    "_organization_admin_account",
    "_proxy",
    "_proxy_target",
    "_event_source_mapping",
    "_function_url",
    "_layer_version",
    "_code_signing_config",
    "_request_validator",
    "_usage_plan",
    "_usage_plan_key",
    "_api_key",
    "_vpc_link",
    "_domain_name",
    "_base_path_mapping",
    "_api_mapping",
    "_action",
    "_plan",
    "_selection",
    "_connection",
    "_connector",
    "_endpoint",
    "_gateway",
    "_peering_connection",
    "_peering",
    "_invocation",
    "_stack_set_instance",
)
# Types inside the stateless families that hold data or an identity, found by re-checking each family
# for clusters, environments, connections, organizations, directories, file systems, streams,
# ledgers, domains, registries and keys (issue 28), each with what its destroy loses.
STATEFUL_TYPES: dict[str, str] = {
    "aws_eks_cluster": "its etcd: every Kubernetes object and secret of the cluster",
    "aws_emr_cluster": "HDFS data on its core nodes and the cluster's step history",
    "aws_docdbelastic_cluster": "its documents",
    "aws_finspace_kx_cluster": "its kdb databases' cached and intraday data",
    "aws_route53recoverycontrolconfig_cluster": "its endpoints, which routing-control clients have configured",
    "aws_mwaa_environment": "the Airflow metadata database: DAG runs, connections, variables",
    "aws_elastic_beanstalk_environment": "its instances' data and a coupled database",
    "aws_datazone_environment": "its data assets and subscriptions",
    "aws_m2_environment": "its runtime storage",
    "aws_amplify_backend_environment": "the backend's deployed resources and data",
    "aws_dx_connection": "the physical cross-connect: a new one needs a new LOA and weeks",
    "aws_dx_hosted_connection": "the partner-provisioned port",
    "aws_vpn_connection": "tunnel addresses and keys every peer has configured",
    "aws_codestarconnections_connection": "the OAuth handshake completed by hand in the console",
    "aws_codeconnections_connection": "the OAuth handshake completed by hand in the console",
    "aws_apprunner_connection": "the OAuth handshake completed by hand in the console",
    "aws_appfabric_app_authorization_connection": "the OAuth authorization completed by hand",
    "aws_organizations_organization": "the organization: every member account leaves it",
    "aws_organizations_organizational_unit": "the OU id that policies and accounts refer to",
    "aws_workspaces_directory": "the registration users' WorkSpaces depend on",
    "aws_fsx_file_cache": "cached and not yet written-back files",
    "aws_fsx_openzfs_snapshot": "the snapshot's data",
    "aws_cloudwatch_log_stream": "its log events",
    "aws_kinesis_firehose_delivery_stream": "records buffered for a failing destination",
    "aws_kinesisanalyticsv2_application": "its running state and snapshots",
    "aws_kinesisanalyticsv2_application_snapshot": "the snapshot",
    "aws_route53domains_domain": "the registered domain itself (it can be lost to anyone)",
    "aws_lightsail_domain": "its DNS zone and records",
    "aws_swf_domain": "workflow execution history",
    "aws_chimesdkvoice_voice_profile_domain": "its enrolled voice profiles",
    "aws_glue_registry": "its schemas and their versions",
    "aws_glue_schema": "the schema's versions",
    "aws_cognito_user": "the user's identity and password",
    "aws_connect_instance": "contact records, recordings and users",
    "aws_iam_virtual_mfa_device": "the MFA seed: the user must enrol again",
    "aws_imagebuilder_image": "the built image",
    "aws_bedrock_custom_model": "the trained model weights",
    "aws_transcribe_language_model": "the trained model",
    "aws_rekognition_collection": "its indexed faces",
    "aws_rekognition_project": "its trained models",
    "aws_location_geofence_collection": "geofences written through the API",
    "aws_prometheus_workspace": "its metrics",
    "aws_quicksight_data_set": "its SPICE data",
    "aws_quicksight_namespace": "its users and their assets",
    "aws_quicksight_user": "the user's dashboards and analyses",
    "aws_securitylake_data_lake": "the lake's data",
    "aws_sagemaker_mlflow_tracking_server": "its tracking metadata",
    "aws_cloudwatch_event_archive": "the archived events",
    "aws_cloudfront_key_value_store": "keys and values written through the API",
    "aws_kms_custom_key_store": "access to the keys it holds",
    "aws_route53_key_signing_key": "the DNSSEC key the parent zone's DS record names",
    "aws_api_gateway_api_key": "the generated key its clients hold",
    "aws_appsync_api_key": "the generated key its clients hold",
    "aws_lightsail_bucket_access_key": "the generated secret, shown once",
    "aws_codebuild_report_group": "its test reports",
    "aws_devicefarm_project": "its runs and artifacts",
    "aws_ivs_channel": "the stream key broadcasters hold",
    "aws_vpc_ipam_pool": "its allocations",
    "aws_ssmcontacts_contact_channel": "the activation the contact confirmed by hand",
    "aws_pinpoint_app": "its endpoints, segments and analytics",
    "aws_sesv2_dedicated_ip_pool": "the warmed dedicated IPs and their reputation",
    # Security services: disabling deletes what they found (guardduty_suspend-disable.html: "existing
    # findings and the GuardDuty configuration are lost and can't be recovered"; the others alike).
    "aws_guardduty_detector": "its findings and configuration, lost for good when the detector is deleted",
    "aws_detective_graph": "the behaviour graph built from months of logs: a new graph starts empty",
    "aws_securityhub_account": "its findings and standards results",
    "aws_macie2_account": "its findings, discovery results and sensitive-data statistics",
    "aws_ssmincidents_replication_set": "every response plan and incident record (deleting it deletes them)",
    # Containers of other resources: their delete deletes everything inside.
    "aws_cloudformation_stack": "every resource the stack created (a stack delete deletes them)",
    "aws_cloudformation_stack_set_instance": "the stack instance and the resources it created in that account",
    "aws_servicecatalog_provisioned_product": "every resource the product provisioned (terminate deletes them)",
    # Identities and generated secrets: a re-created one has a new unique ID or a new secret.
    "aws_iam_role": "its unique role ID: trust and resource policies naming the role stop matching a new one",
    "aws_cognito_user_pool_client": "the generated client secret its apps hold",
    "aws_grafana_workspace_api_key": "the generated key its clients hold",
    "aws_wafv2_api_key": "the generated key its clients hold",
    # DNS names delegated elsewhere: a new one gets new name servers the registrar does not list.
    "aws_service_discovery_public_dns_namespace": "its hosted zone and the name servers the parent delegates to",
    "aws_route53_delegation_set": "the reusable name servers registrars and parent zones point at",
}

# Whole families of configuration, each with why its destroy loses nothing an apply does not bring
# back. Checked family by family; the data-holding types inside them are in STATEFUL_TYPES first.
STATELESS_FAMILY_REASONS: dict[str, tuple[str, ...]] = {
    (
        "identity and access configuration: policies, groups, attachments and user settings are re-created "
        "from the code (users, roles and access keys, which hold identities, are stateful above)"
    ): (
        "aws_iam_",
        "aws_ssoadmin_",
        "aws_accessanalyzer_",
        "aws_ram_",
        "aws_verifiedaccess_",
        "aws_cognito_",
        "aws_organizations_",
        "aws_account_",
    ),
    (
        "network plumbing: VPCs, subnets, routes, gateways, firewalls and load balancers hold no data; an "
        "apply re-creates them (new ids)"
    ): (
        "aws_vpc",
        "aws_subnet",
        "aws_route_table",
        "aws_default_",
        "aws_security_group",
        "aws_network_acl",
        "aws_nat_gateway",
        "aws_internet_gateway",
        "aws_egress_only_internet_gateway",
        "aws_lb",
        "aws_alb",
        "aws_elb",
        "aws_placement_group",
        "aws_flow_log",
        "aws_ec2_",
        "aws_vpn_",
        "aws_customer_gateway",
        "aws_dx_",
        "aws_networkfirewall_",
        "aws_networkmanager_",
        "aws_vpclattice_",
        "aws_vpc_ipam",
        "aws_globalaccelerator_",
        "aws_globalaccelerator",
        "aws_route53_",
        "aws_route53recoverycontrolconfig_",
        "aws_route53profiles_",
        "aws_route53resolver_",
        "aws_cloudfront_",
        "aws_eip_",
        "aws_shield_",
        "aws_shield",
        "aws_wafv2_",
        "aws_waf_",
        "aws_wafregional_",
    ),
    (
        "compute and orchestration definitions: functions, containers, jobs, state machines and scaling run "
        "from code and images; their data lives in stores classed stateful"
    ): (
        "aws_lambda_",
        "aws_sfn_",
        "aws_batch_",
        "aws_ecs_",
        "aws_eks_",
        "aws_autoscaling",
        "aws_appautoscaling",
        "aws_launch_",
        "aws_instance_",
        "aws_key_pair_",
        "aws_apprunner_",
        "aws_elastic_beanstalk_",
        "aws_emr_",
        "aws_emrserverless_",
        "aws_emrcontainers_",
        "aws_mwaa_",
        "aws_gamelift_",
        "aws_m2_",
        "aws_swf_",
        "aws_scheduler_",
        "aws_pipes_",
        "aws_glue_job",
        "aws_glue_crawler",
        "aws_glue_workflow",
        "aws_glue_trigger",
        "aws_glue_classifier",
        "aws_glue_",
        "aws_dms_",
        "aws_datasync_",
        "aws_transfer_",
        "aws_osis_",
        "aws_imagebuilder_",
        "aws_appflow_",
        "aws_appintegrations_",
        "aws_kinesis_firehose_",
        "aws_kinesis_analytics",
        "aws_kinesisanalyticsv2_",
        "aws_amplify_",
        "aws_appsync_",
        "aws_appmesh_",
        "aws_service_discovery_",
        "aws_api_gateway_",
        "aws_apigatewayv2_",
        "aws_cloudformation_",
        "aws_cloudcontrolapi_",
        "aws_codebuild_",
        "aws_codepipeline",
        "aws_codedeploy_",
        "aws_codestarconnections_",
        "aws_codestarnotifications_",
        "aws_codeguruprofiler_",
        "aws_codegurureviewer_",
        "aws_dlm_",
        "aws_ssm_",
        "aws_appconfig_",
        "aws_servicecatalog",
        "aws_servicecatalogappregistry_",
        "aws_resourcegroups_",
        "aws_servicequotas_",
        "aws_licensemanager_",
        "aws_signer_",
        "aws_sagemaker_",
        "aws_bedrock",
        "aws_comprehend_",
        "aws_kendra_",
        "aws_rekognition_",
        "aws_transcribe_",
        "aws_polly_",
        "aws_lex",
        "aws_chime",
        "aws_connect_",
        "aws_pinpoint_",
        "aws_ses",
        "aws_sns_",
        "aws_medialive_",
        "aws_mediaconvert_",
        "aws_mediapackage",
        "aws_ivs",
        "aws_devicefarm_",
        "aws_worklink_",
        "aws_workspaces_",
        "aws_directory_service_",
        "aws_iot_",
        "aws_location_",
        "aws_quicksight_",
        "aws_cleanrooms_",
        "aws_datazone_",
        "aws_finspace_",
    ),
    (
        "monitoring, audit, security and cost settings: alarms, dashboards, rules, budgets and their "
        "targets are configuration (the logs they write go to log groups and buckets, and the detectors, "
        "graphs and accounts that hold findings are classed stateful above)"
    ): (
        "aws_cloudwatch_",
        "aws_cloudtrail",
        "aws_config_",
        "aws_guardduty_",
        "aws_securityhub_",
        "aws_inspector",
        "aws_macie2_",
        "aws_detective_",
        "aws_fms_",
        "aws_auditmanager_",
        "aws_xray_",
        "aws_synthetics_",
        "aws_oam_",
        "aws_rum_",
        "aws_evidently_",
        "aws_chatbot_",
        "aws_budgets_",
        "aws_ce_",
        "aws_ssmcontacts_",
        "aws_ssmincidents_",
        "aws_resiliencehub_",
        "aws_securitylake_",
        "aws_grafana_",
        "aws_prometheus_",
    ),
    (
        "settings of data services whose stores are matched stateful above: parameter and subnet groups, "
        "options, policies, users, attachments of buckets, keys, databases, caches, queues and streams"
    ): (
        "aws_s3_",
        "aws_s3control_",
        "aws_s3tables_",
        "aws_kms_",
        "aws_acm_",
        "aws_secretsmanager_",
        "aws_backup_",
        "aws_rds_",
        "aws_db_",
        "aws_docdb",
        "aws_neptune",
        "aws_neptunegraph",
        "aws_elasticache_",
        "aws_memorydb_",
        "aws_memorydb",
        "aws_redshift",
        "aws_dynamodb_",
        "aws_dax_",
        "aws_dsql",
        "aws_efs_",
        "aws_fsx_",
        "aws_opensearch",
        "aws_elasticsearch_",
        "aws_msk_",
        "aws_mq_",
        "aws_sqs_",
        "aws_kinesis_",
        "aws_lightsail_",
        "aws_storagegateway_",
        "aws_ecr_",
        "aws_ecrpublic_",
        "aws_athena_workgroup",
        "aws_athena_named_query",
        "aws_athena_prepared_statement",
        "aws_athena_",
        "aws_lakeformation_",
        "aws_keyspaces_",
        "aws_timestream",
        "aws_qldb_",
        "aws_codeartifact_",
        "aws_codecommit_",
        "aws_cloudhsm_",
        "aws_route53domains_",
        "aws_ami_launch_permission",
        "aws_snapshot_create_volume_permission",
        "aws_volume_attachment",
    ),
}
STATELESS_FAMILIES = tuple(p for family in STATELESS_FAMILY_REASONS.values() for p in family)

_STATEFUL = re.compile(r"^aws_(?:" + "|".join(f"(?:{p})" for p in STATEFUL) + r")$")


def rule_class(type_: str) -> str:
    """The class the rule gives an AWS resource type (see the module docstring)."""
    if type_ in STATEFUL_TYPES or _STATEFUL.match(type_):
        return "stateful"
    if type_.endswith(STATELESS_SUFFIXES) or type_.startswith(STATELESS_FAMILIES):
        return "stateless"
    return "unknown"


@cache
def table() -> dict:
    return json.loads(TABLE.read_text())


# provider_name forms Terraform has written for hashicorp/aws: the full source address, the short
# forms of older state ("aws", "-/aws" legacy namespace) and without the registry host;
# OpenTofu writes the same provider as registry.opentofu.org/hashicorp/aws.
AWS_NAMES = {
    PROVIDER,
    "aws",
    "hashicorp/aws",
    "-/aws",
    "registry.terraform.io/-/aws",
    "provider.aws",
    "registry.opentofu.org/hashicorp/aws",
}


def classify(type_: str, provider_name: str | None = None) -> str:
    """stateful / stateless / unknown; a type of another provider, or not in the table, is unknown."""
    if provider_name and provider_name.removeprefix("provider[").strip('"]') not in AWS_NAMES:
        return "unknown"
    return table()["classes"].get(type_, "unknown")


def schema_types() -> tuple[str, list[str]]:
    """(version, resource types) of the provider the committed lock file pins, from its own schema."""
    lock = (REPO / ".terraform.lock.hcl").read_text()
    version = re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"([^"]+)"', lock).group(1)
    from tools.tf_validate import init

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = {"terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": version}}}}
        (work / "main.tf.json").write_text(json.dumps(config))
        init(work, backend=False)
        proc = subprocess.run(
            ["terraform", "providers", "schema", "-json"], cwd=work, capture_output=True, text=True, check=True
        )
    schema = json.loads(proc.stdout)["provider_schemas"][PROVIDER]["resource_schemas"]
    return version, sorted(schema)


def generate(version: str, types: list[str]) -> dict:
    classes = {t: rule_class(t) for t in types}
    counts = {c: sum(v == c for v in classes.values()) for c in ("stateful", "stateless", "unknown")}
    return {
        "provider": PROVIDER,
        "version": version,
        "rule": "tools/resource_classes.py (module docstring, STATEFUL, STATELESS_SUFFIXES, STATELESS_FAMILIES)",
        "counts": counts,
        "classes": classes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.resource_classes", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the committed table with the schema")
    args = parser.parse_args(argv)
    fresh = generate(*schema_types())
    if args.check:
        stale = "error: tools/resource_classes.json is stale; run `python -m tools.resource_classes`"
        if fresh != json.loads(TABLE.read_text()):
            print(stale, file=sys.stderr)
            return 1
        print(f"resource classes: {fresh['counts']} ({len(fresh['classes'])} types, aws {fresh['version']})")
        return 0
    TABLE.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE.relative_to(REPO)}: {fresh['counts']}")
    return 0


if __name__ == "__main__":
    cli.run(main)
