"""GuardBudget's ledger of what allowed executions are estimated to spend.

Budgets data lags by hours: a burst of manifests would each see the same stale spend and all pass
the guard together. The guard therefore reserves each allowed execution's estimate here, in one
item per budget period (the key attribute keeps its first name, ``budget_updated``: renaming it
would replace the table), written with a version condition so two guards cannot both take the last
room (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate).
A reservation counts for 24 h (lambda_src/guard_budget/handler.py, LAG_SECONDS); items expire (TTL)
two days after their last reservation.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
    DynamodbTableTtl,
)
from constructs import Construct

from modules.encryption import PipelineKey
from modules.iam import GrantableRole, statement

LEDGER_KEY = "budget_updated"
LEDGER_TTL_ATTRIBUTE = "expires"


@dataclass(frozen=True)
class SpendLedgerProps:
    prefix: str
    key: PipelineKey
    prevent_destroy: bool


class SpendLedger(Construct):
    def __init__(self, scope: Construct, id_: str, props: SpendLedgerProps) -> None:
        super().__init__(scope, id_)
        self.key = props.key
        self.table = DynamodbTable(
            self,
            "table",
            name=f"{props.prefix}-spend-ledger",
            billing_mode="PAY_PER_REQUEST",
            hash_key=LEDGER_KEY,
            attribute=[DynamodbTableAttribute(name=LEDGER_KEY, type="S")],
            ttl=DynamodbTableTtl(attribute_name=LEDGER_TTL_ATTRIBUTE, enabled=True),
            point_in_time_recovery=DynamodbTablePointInTimeRecovery(enabled=True),
            server_side_encryption=DynamodbTableServerSideEncryption(enabled=True, kms_key_arn=props.key.key_arn),
            lifecycle={"prevent_destroy": props.prevent_destroy},
        )
        self.table_name: str = self.table.name
        self.table_arn: str = self.table.arn

    def grant_reserve(self, role: GrantableRole) -> None:
        """Read the reserved sum and add to it (GuardBudget)."""
        role.add_statements(statement(["dynamodb:GetItem", "dynamodb:UpdateItem"], [self.table_arn]))
        self.key.grant_encrypt_decrypt(role)
