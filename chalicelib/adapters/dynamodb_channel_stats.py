"""Per-channel hourly outcome counters in DynamoDB, for the circuit breaker: pk `channel`,
sk `hour#YYYY-MM-DDTHH` (UTC), counted with atomic ADD (no read before the write, no lost
update between concurrent senders and feedback handlers), expiring a few days later. Inside
`batched()` (a queue consumer's batch) the additions are summed per channel and hour and
written once when the batch ends (adapters/counter_batches.py); `window` counts them meanwhile.
`window` keeps what it read for WINDOW_CACHE (the breaker's counters are hourly: a few seconds
late is nothing, and a consumer's batch asks once instead of once per send)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.adapters.counter_batches import BatchedAdds, add_into
from chalicelib.domain.messaging.policy import SendCounters
from chalicelib.services.message_ports import ChannelStats

RETENTION = timedelta(days=8)  # beyond any breaker window
WINDOW_CACHE = timedelta(seconds=10)


def hour_key(at: datetime) -> str:
    return "hour#" + at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


class DynamoDBChannelStats(LazyTable, ChannelStats, BatchedAdds):
    def __init__(self, table_name: str, resource=None, client=None):
        super().__init__(table_name, resource, client)
        self._window_cache: dict = {}  # (channel, first hour, last hour) -> (read at, rows)

    def add(self, channel: str, at: datetime, sent: int = 0, bounced: int = 0, complained: int = 0) -> None:
        if not (sent or bounced or complained):
            return
        pending = self._pending()
        if pending is not None:
            row = pending.setdefault((channel, hour_key(at)), {"at": at})
            row["at"] = max(row["at"], at)
            add_into(row, {"sent": sent, "bounced": bounced, "complained": complained})
            return
        self._write(channel, at, sent, bounced, complained)

    def _write_pending(self, pending: dict) -> None:
        for (channel, _), row in pending.items():
            self._write(channel, row["at"], row.get("sent", 0), row.get("bounced", 0), row.get("complained", 0))

    def _stored_rows(self, channel: str, start: str, end: str, now: datetime) -> list[dict]:
        cache = self._window_cache
        cached = cache.get((channel, start, end))
        if cached is not None and cached[0] <= now <= cached[0] + WINDOW_CACHE:
            return cached[1]
        rows = self.query_all(KeyConditionExpression=Key("channel").eq(channel) & Key("sk").between(start, end))
        cache.clear()  # one window per channel is all a sender asks
        cache[(channel, start, end)] = (now, rows)
        return rows

    def _write(self, channel: str, at: datetime, sent: int, bounced: int, complained: int) -> None:
        self._window_cache.clear()  # what it read no longer has this addition
        self.table.update_item(
            Key={"channel": channel, "sk": hour_key(at)},
            UpdateExpression="ADD sent :s, bounced :b, complained :c SET expires = if_not_exists(expires, :e)",
            ExpressionAttributeValues={":s": int(sent), ":b": int(bounced), ":c": int(complained),
                                       ":e": int((at + RETENTION).timestamp())})

    def window(self, channel: str, now: datetime, hours: int) -> SendCounters:
        """The last `hours` whole hours, the current one included."""
        start = hour_key(now - timedelta(hours=max(hours, 1) - 1))
        rows = self._stored_rows(channel, start, hour_key(now), now)
        unwritten = [row for (ch, hour), row in (self._pending() or {}).items()
                     if ch == channel and start <= hour <= hour_key(now)]
        rows = rows + unwritten  # this batch's own additions, not written yet
        return SendCounters(sent=sum(int(r.get("sent", 0)) for r in rows),
                            bounced=sum(int(r.get("bounced", 0)) for r in rows),
                            complained=sum(int(r.get("complained", 0)) for r in rows),
                            window=timedelta(hours=hours))
