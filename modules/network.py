"""The pipeline's network: private subnets only, egress through a NAT gateway or VPC endpoints.

Nothing in the VPC accepts traffic from the internet. Batch instances reach S3 through the free
gateway endpoint, and ECS, ECR, CloudWatch Logs and STS either through interface endpoints
(``egress: endpoints``) or one NAT gateway (``egress: nat``), as the profile chooses;
``tools/preflight.py`` proves on the synthesized config that every service is reachable.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from cdktf import Fn
from cdktf_cdktf_provider_aws.data_aws_availability_zones import DataAwsAvailabilityZones
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, GrantableRoleProps
from modules.logs import LogGroup, LogGroupProps

# What a Batch (ECS) instance calls: the ECS agent (ecs, ecs-agent, ecs-telemetry), image pulls
# (ecr.api, ecr.dkr; layers come from S3 through the gateway endpoint), awslogs (logs), and STS.
INTERFACE_ENDPOINTS = ("ecs", "ecs-agent", "ecs-telemetry", "ecr.api", "ecr.dkr", "logs", "sts")
HTTPS = 443


def s3_endpoint_policy(account_id: str, region: str) -> dict:
    """What the S3 gateway endpoint lets through: this account's buckets, and the bucket ECR keeps
    image layers in (an image pull fetches layers from it via this endpoint). Without a policy, a
    compromised stage could write to any bucket in the world through it.
    https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ThisAccountsBuckets",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",  # any bucket, as long as this account owns it (the condition)
                "Condition": {"StringEquals": {"aws:ResourceAccount": account_id}},
            },
            {
                "Sid": "EcrImageLayers",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::prod-{region}-starport-layer-bucket/*",
            },
        ],
    }


@dataclass(frozen=True)
class NetworkProps:
    prefix: str
    region: str
    cidr: str
    az_count: int
    egress: str  # "endpoints" | "nat"
    log_retention_days: int
    key: PipelineKey
    account_id: str


class Network(Construct):
    def __init__(self, scope: Construct, id_: str, props: NetworkProps) -> None:
        super().__init__(scope, id_)
        self.vpc = Vpc(
            self,
            "vpc",
            cidr_block=props.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{props.prefix}-vpc"},
        )
        self.vpc_id: str = self.vpc.id  # read once: every attribute read is a round trip to jsii
        # Take every rule away from the default security group, so nothing can use it by accident.
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc_id, tags={"Name": f"{props.prefix}-default-locked"})
        azs = DataAwsAvailabilityZones(self, "azs", state="available")
        blocks = list(ipaddress.ip_network(props.cidr).subnets(new_prefix=20))
        self.private_route_table = RouteTable(
            self, "private-rt", vpc_id=self.vpc_id, tags={"Name": f"{props.prefix}-private"}
        )
        self.private_route_table_id: str = self.private_route_table.id
        self.private_subnets: list[Subnet] = []
        for index in range(props.az_count):
            subnet = Subnet(
                self,
                f"private-{index}",
                vpc_id=self.vpc_id,
                cidr_block=str(blocks[index]),
                availability_zone=Fn.element(azs.names, index),
                map_public_ip_on_launch=False,
                tags={"Name": f"{props.prefix}-private-{index}", "Tier": "private"},
            )
            RouteTableAssociation(
                self, f"private-{index}-rt", subnet_id=subnet.id, route_table_id=self.private_route_table_id
            )
            self.private_subnets.append(subnet)
        self.private_subnet_ids: list[str] = [s.id for s in self.private_subnets]

        self.s3_endpoint = VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=self.vpc_id,
            service_name=f"com.amazonaws.{props.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[self.private_route_table_id],
            policy=json.dumps(s3_endpoint_policy(props.account_id, props.region)),
            tags={"Name": f"{props.prefix}-s3"},
        )
        self.batch_security_group = SecurityGroup(
            self,
            "batch-sg",
            name=f"{props.prefix}-batch",
            vpc_id=self.vpc_id,
            description="Batch instances: no inbound; outbound HTTPS only",
            tags={"Name": f"{props.prefix}-batch"},
        )
        self.batch_security_group_id: str = self.batch_security_group.id
        self._https_out("batch-to-s3", prefix_list_id=self.s3_endpoint.prefix_list_id)
        if props.egress == "nat":
            self._nat_gateway(props, blocks[props.az_count], Fn.element(azs.names, 0))
            self._https_out("batch-to-internet", cidr="0.0.0.0/0")
        else:
            self._interface_endpoints(props)
            self._https_out("batch-to-endpoints", cidr=props.cidr)
        self._flow_logs(props)

    def _https_out(self, id_: str, *, cidr: str | None = None, prefix_list_id: str | None = None) -> None:
        VpcSecurityGroupEgressRule(
            self,
            id_,
            security_group_id=self.batch_security_group_id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4=cidr,
            prefix_list_id=prefix_list_id,
            description=f"HTTPS: {id_}",
        )

    def _nat_gateway(self, props: NetworkProps, block: ipaddress.IPv4Network, az: str) -> None:
        """One NAT gateway in a public subnet that holds nothing else (no instance gets a public IP)."""
        igw = InternetGateway(self, "igw", vpc_id=self.vpc_id, tags={"Name": f"{props.prefix}-igw"})
        public = Subnet(
            self,
            "public-nat",
            vpc_id=self.vpc_id,
            cidr_block=str(block),
            availability_zone=az,
            map_public_ip_on_launch=False,
            tags={"Name": f"{props.prefix}-public-nat", "Tier": "public"},
        )
        public_rt = RouteTable(self, "public-rt", vpc_id=self.vpc_id, tags={"Name": f"{props.prefix}-public"})
        Route(
            self, "public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0", gateway_id=igw.id
        )
        RouteTableAssociation(self, "public-nat-rt", subnet_id=public.id, route_table_id=public_rt.id)
        eip = Eip(self, "nat-eip", domain="vpc", tags={"Name": f"{props.prefix}-nat"}, depends_on=[igw])
        nat = NatGateway(self, "nat", allocation_id=eip.id, subnet_id=public.id, tags={"Name": f"{props.prefix}-nat"})
        Route(
            self,
            "private-default",
            route_table_id=self.private_route_table_id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
        )

    def _interface_endpoints(self, props: NetworkProps) -> None:
        endpoint_sg = SecurityGroup(
            self,
            "endpoint-sg",
            name=f"{props.prefix}-endpoints",
            vpc_id=self.vpc_id,
            description="Interface endpoints: HTTPS from the Batch security group only",
            tags={"Name": f"{props.prefix}-endpoints"},
        )
        VpcSecurityGroupIngressRule(
            self,
            "endpoints-from-batch",
            security_group_id=endpoint_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            referenced_security_group_id=self.batch_security_group_id,
            description="HTTPS from Batch instances",
        )
        for service in INTERFACE_ENDPOINTS:
            VpcEndpoint(
                self,
                f"endpoint-{service.replace('.', '-')}",
                vpc_id=self.vpc_id,
                service_name=f"com.amazonaws.{props.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.private_subnet_ids,
                security_group_ids=[endpoint_sg.id],
                tags={"Name": f"{props.prefix}-{service}"},
            )

    def _flow_logs(self, props: NetworkProps) -> None:
        group = LogGroup(
            self,
            "flow-logs",
            LogGroupProps(
                name=f"/vpc/{props.prefix}/flow-logs",
                retention_days=props.log_retention_days,
                key=props.key,
            ),
        )
        role = GrantableRole(
            self,
            "flow-logs-role",
            GrantableRoleProps(
                name=f"{props.prefix}-vpc-flow-logs",
                service="vpc-flow-logs.amazonaws.com",
                description="Delivers VPC flow logs to CloudWatch Logs",
                source_account=props.account_id,
            ),
        )
        group.grant_write(role)
        self.flow_log = FlowLog(
            self,
            "flow-log",
            vpc_id=self.vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.role_arn,
            max_aggregation_interval=60,
        )
        self.flow_log_group = group
