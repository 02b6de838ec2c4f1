"""The recheck schedule: contacts filed under the day and minute they must be looked at again.

pk "due#<YYYY-MM-DD>", sk "<HH:MM>#<contact id>". Reading what is due walks the days from
the oldest unfinished one to today (one query per day), so its cost follows the contacts
that may flip, not the number of minutes that went by.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.ports import RecheckSchedule

CURSOR_KEY = {"pk": "cursor", "sk": "recheck"}
RETENTION = timedelta(days=400)
FIRST_LOOK_BACK = timedelta(days=2)


def slot_of(at: datetime) -> tuple[str, str]:
    """(day, minute), rounded up: a contact is never looked at before its moment."""
    at = at.astimezone(timezone.utc)
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return at.strftime("%Y-%m-%d"), at.strftime("%H:%M")


class DynamoDBRecheckSchedule(LazyTable, RecheckSchedule):
    def schedule(self, contact_id: str, at: datetime) -> None:
        day, minute = slot_of(at)
        expires = int((at + RETENTION).timestamp())
        self.table.put_item(Item={"pk": f"due#{day}", "sk": f"{minute}#{contact_id}", "expires": expires})

    def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        now = now.astimezone(timezone.utc)
        today = now.strftime("%Y-%m-%d")
        cursor = self.table.get_item(Key=CURSOR_KEY, ConsistentRead=True).get("Item")
        day = datetime.strptime(cursor["day"], "%Y-%m-%d").date() if cursor else (now - FIRST_LOOK_BACK).date()
        found: list[tuple[str, str]] = []
        while day.isoformat() <= today and len(found) < limit:
            key = Key("pk").eq(f"due#{day.isoformat()}")
            if day.isoformat() == today:
                key = key & Key("sk").lte(now.strftime("%H:%M") + "#\uffff")
            page = self.table.query(KeyConditionExpression=key, Limit=limit - len(found), ConsistentRead=True)
            items = page.get("Items", [])
            found.extend((f"{day.isoformat()}T{item['sk'].split('#', 1)[0]}", item["sk"].split("#", 1)[1])
                         for item in items)
            if page.get("LastEvaluatedKey") or day.isoformat() == today:
                break
            if not items:  # a past day with nothing left: never read again
                self.table.put_item(Item={**CURSOR_KEY, "day": (day + timedelta(days=1)).isoformat()})
            day += timedelta(days=1)
        return found

    def done(self, slot: str, contact_id: str) -> None:
        day, minute = slot.split("T")
        self.table.delete_item(Key={"pk": f"due#{day}", "sk": f"{minute}#{contact_id}"})
