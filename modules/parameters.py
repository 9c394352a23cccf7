"""SSM parameters of the pipeline: switches the handlers read and write, settings, and secrets.

Values that operators or handlers change at run time (the kill switch, the shutdown state) are
created once with a placeholder; Terraform ignores later value changes. Secrets (the weather API
key) are not Terraform's at all: ``value`` would land in state, and the write-only ``value_wo``
breaks every later update of the parameter (provider 5.100 sends the empty ``value``). Terraform
knows only their names (the functions' grants and settings); ``make weather-key ENV=<env>`` sets
and rotates a value as a SecureString with the pipeline key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdktf_cdktf_provider_aws.ssm_parameter import SsmParameter
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement


@dataclass(frozen=True)
class PipelineParametersProps:
    project: str
    environment: str
    region: str
    account_id: str
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
        self.parameter_arn_prefix = f"arn:aws:ssm:{props.region}:{props.account_id}:parameter"
        self.secrets = {name: f"{self.path}/secrets/{name}" for name in props.secrets}

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

    def grant_read_secret(self, role: GrantableRole, name: str) -> None:
        """GetParameter (WithDecryption) of one secret, by the ARN its name makes."""
        role.add_statements(statement(["ssm:GetParameter"], [f"{self.parameter_arn_prefix}{self.secrets[name]}"]))
        self.key.grant_decrypt(role)

    def grant_write(self, role: GrantableRole, *parameters: SsmParameter) -> None:
        role.add_statements(statement(["ssm:GetParameter", "ssm:PutParameter"], [p.arn for p in parameters]))
