"""The suppression list in DynamoDB: pk `address_hash` (a salted HMAC, never the address),
sk `<channel>#<reason>`. Adding the same channel, hash and reason again keeps the first
entry (a conditional put), so the date of the first hard bounce or opt-out is the one kept."""
from __future__ import annotations

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.messaging.consent import SuppressionEntry
from chalicelib.services.message_ports import SuppressionStore


class DynamoDBSuppressionStore(LazyTable, SuppressionStore):
    def find(self, channel: str, address_hash: str) -> tuple[SuppressionEntry, ...]:
        rows = self.table.query(KeyConditionExpression=Key("address_hash").eq(address_hash)
                                & Key("entry").begins_with(f"{channel}#"), ConsistentRead=True).get("Items", [])
        return tuple(sorted((SuppressionEntry.from_document(r) for r in rows), key=lambda e: e.at))

    def add(self, entry: SuppressionEntry) -> None:
        item = {**entry.to_document(), "entry": f"{entry.channel}#{entry.reason}"}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(address_hash)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
