"""SSM parameters of the pipeline: switches the handlers read and write, settings, and secrets.

Values that operators or handlers change at run time (the kill switch, the shutdown state) are
created once with a placeholder; Terraform ignores later value changes. A secret is created with a
placeholder through the write-only ``value_wo`` (Terraform 1.11, provider 5.100): no value of it
is ever stored in state, not even the one a refresh reads back (``ignore_changes`` keeps the read
value in state). Its real value is set and rotated outside Terraform:

    aws ssm put-parameter --overwrite --type SecureString --name /<project>/<env>/secrets/<name> \
        --key-id alias/<project>-<env>-pipeline --value "$VALUE"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktf_cdktf_provider_aws.ssm_parameter import SsmParameter
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement

PLACEHOLDER_SECRET = "set-out-of-band"  # noqa: S105 - a marker, replaced with `aws ssm put-parameter`


@dataclass(frozen=True)
class PipelineParametersProps:
    project: str
    environment: str
    key: PipelineKey
    settings: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ("weather-api-key",)


class PipelineParameters(Construct):
    def __init__(self, scope: Construct, id_: str, props: PipelineParametersProps) -> None:
        super().__init__(scope, id_)
        self.path = f"/{props.project}/{props.environment}"
        self.key = props.key
        self.kill_switch = self._mutable("kill-switch", "off", "on stops new executions (GuardBudget)")
        self.shutdown_state = self._mutable(
            "budget-shutdown-state", "{}", "vCPU limits saved by budget_shutdown, restored on resume"
        )
        self.settings = SsmParameter(
            self,
            "settings",
            name=f"{self.path}/settings",
            type="String",
            value=json.dumps(props.settings, sort_keys=True),
            description="Pipeline settings (bucket names, queues, state machine)",
        )
        self.secrets = {
            name: SsmParameter(
                self,
                f"secret-{name}",
                name=f"{self.path}/secrets/{name}",
                type="SecureString",
                key_id=props.key.key_arn,
                value_wo=PLACEHOLDER_SECRET,
                value_wo_version=1,  # only a new version makes Terraform write value_wo again
                description=f"{name}: set out of band (aws ssm put-parameter); never in Terraform state",
            )
            for name in props.secrets
        }

    def _mutable(self, name: str, initial: str, description: str) -> SsmParameter:
        return SsmParameter(
            self,
            name,
            name=f"{self.path}/{name}",
            type="String",
            value=initial,
            description=description,
            lifecycle={"ignore_changes": ["value"]},
        )

    def grant_read(self, role: GrantableRole, *parameters: SsmParameter) -> None:
        role.add_statements(statement(["ssm:GetParameter"], [p.arn for p in parameters]))
        if any(p in self.secrets.values() for p in parameters):
            self.key.grant_decrypt(role)

    def grant_write(self, role: GrantableRole, *parameters: SsmParameter) -> None:
        role.add_statements(statement(["ssm:GetParameter", "ssm:PutParameter"], [p.arn for p in parameters]))
