"""The channels' send rate in DynamoDB: one item per channel (pk `channel`, sk `rate`)
holding the GCRA theoretical arrival time (`tat`, microseconds since the epoch). A send reads
it, asks policy.take_send, and writes the new value with one conditional write (the value it
read is still there): two senders racing for the last token, one wins, the other reads again.

A sender takes up to RESERVE tokens with that one write when the bucket has them (a consumer's
batch is 10 messages), keeps the extra ones in memory and spends them without asking again
for at most HOLD: one read and one write per batch instead of per send. Every token held was
taken from the shared bucket, so the sends over any stretch of time stay within what the
bucket allows over that stretch plus HOLD; a held token not spent in time is dropped (the
rate is then used a little less, never more)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.domain.messaging.policy import RateBudget, RateState, rate_ready_at, take_send
from chalicelib.services.message_ports import SendRate

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_RACES = 5
RATE_KEY = "rate"
RESERVE = 10  # tokens taken by one write when available: a consumer batch's sends
HOLD = timedelta(seconds=1)  # how long tokens taken ahead may still be spent


def _micros(moment: datetime) -> int:
    span = moment - EPOCH
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


class DynamoDBSendRate(LazyTable, SendRate):
    _held: dict | None = None  # (channel, lane) -> (tokens, spendable until)

    def _spend_held(self, key: tuple[str, str], now: datetime) -> bool:
        if self._held is None:
            self._held = {}
        tokens, until = self._held.get(key, (0, now))
        if tokens > 0 and until >= now:
            self._held[key] = (tokens - 1, until)
            return True
        self._held.pop(key, None)
        return False

    def take(self, channel: str, lane: str, budget: RateBudget, now: datetime) -> datetime | None:
        if self._spend_held((channel, lane), now):
            return None
        for _ in range(MAX_RACES):
            item = self.table.get_item(Key={"channel": channel, "sk": RATE_KEY}, ConsistentRead=True).get("Item")
            state = RateState(_moment(item["tat"]) if item and "tat" in item else None)
            taken, new_state = take_send(budget, state, lane, now)
            if not taken:
                return rate_ready_at(budget, state, lane, now)
            extra = 0
            while extra < RESERVE - 1:
                more, after = take_send(budget, new_state, lane, now)
                if not more:
                    break
                extra, new_state = extra + 1, after
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
            if extra:
                self._held[(channel, lane)] = (extra, now + HOLD)
            return None
        # Contended beyond reason: say when to try, one interval from now.
        return now + timedelta(microseconds=budget.interval_us())
