"""The recheck schedule: contacts filed under the minute they must be looked at again."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.ports import RecheckSchedule

SLOT = "%Y-%m-%dT%H:%M"
CURSOR_KEY = {"pk": "cursor", "sk": "recheck"}
RETENTION = timedelta(days=400)


def slot_of(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    if at.second or at.microsecond:  # round up: never look before the moment
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return at.strftime(SLOT)


class DynamoDBRecheckSchedule(LazyTable, RecheckSchedule):
    def schedule(self, contact_id: str, at: datetime) -> None:
        slot = slot_of(at)
        expires = int((datetime.strptime(slot, SLOT).replace(tzinfo=timezone.utc) + RETENTION).timestamp())
        self.table.put_item(Item={"pk": f"due#{slot}", "sk": contact_id, "expires": expires})

    def _cursor(self) -> str | None:
        item = self.table.get_item(Key=CURSOR_KEY, ConsistentRead=True).get("Item")
        return item["slot"] if item else None

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Walk the minutes from the oldest unfinished one up to now."""
        last = slot_of(now.replace(second=0, microsecond=0))
        start = self._cursor()
        if start is None:
            start = (now - timedelta(days=1)).strftime(SLOT)
        current = datetime.strptime(start, SLOT).replace(tzinfo=timezone.utc)
        end = datetime.strptime(last, SLOT).replace(tzinfo=timezone.utc)
        found: list[tuple[str, str]] = []
        while current <= end and len(found) < limit:
            slot = current.strftime(SLOT)
            page = self.table.query(KeyConditionExpression=Key("pk").eq(f"due#{slot}"), Limit=limit - len(found),
                                    ConsistentRead=True)
            items = page.get("Items", [])
            found.extend((slot, item["sk"]) for item in items)
            if page.get("LastEvaluatedKey") or len(found) >= limit:
                break
            current += timedelta(minutes=1)
            # Every minute before `current` is fully handled once its items are done.
            if not items:
                self.table.put_item(Item={**CURSOR_KEY, "slot": current.strftime(SLOT)})
        return found

    def done(self, slot: str, contact_id: str) -> None:
        self.table.delete_item(Key={"pk": f"due#{slot}", "sk": contact_id})
