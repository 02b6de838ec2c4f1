"""The channels' send rate in DynamoDB: one item per channel (pk `channel`, sk `rate`)
holding the GCRA theoretical arrival time (`tat`, microseconds since the epoch). A send reads
it, asks policy.take_send, and writes the new value with one conditional write (the value it
read is still there): two senders racing for the last token, one wins, the other reads again."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.messaging.policy import RateBudget, RateState, rate_ready_at, take_send
from chalicelib.services.message_ports import SendRate

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_RACES = 5
RATE_KEY = "rate"


def _micros(moment: datetime) -> int:
    span = moment - EPOCH
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


class DynamoDBSendRate(LazyTable, SendRate):
    def take(self, channel: str, lane: str, budget: RateBudget, now: datetime) -> datetime | None:
        for _ in range(MAX_RACES):
            item = self.table.get_item(Key={"channel": channel, "sk": RATE_KEY}, ConsistentRead=True).get("Item")
            state = RateState(_moment(item["tat"]) if item and "tat" in item else None)
            taken, new_state = take_send(budget, state, lane, now)
            if not taken:
                return rate_ready_at(budget, state, lane, now)
            condition, values = "attribute_not_exists(tat)", {":new": _micros(new_state.tat)}
            if state.tat is not None:
                condition, values[":old"] = "tat = :old", int(item["tat"])
            try:
                self.table.update_item(Key={"channel": channel, "sk": RATE_KEY}, UpdateExpression="SET tat = :new",
                                       ConditionExpression=condition, ExpressionAttributeValues=values)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue  # another sender took a token meanwhile: look again
                raise
            return None
        # Contended beyond reason: say when to try, one interval from now.
        return now + timedelta(microseconds=budget.interval_us())
