"""Campaign funnel counters in DynamoDB, beside the channel counters in the channels table:
pk `channel` = `campaign#<campaign id>`, sk `funnel#<template>#<variant>`, one number
attribute per counter (`sent`, `skipped:holdout`…) added with atomic ADD. A campaign's funnel
is one query of its partition (a row per template and variant). Inside `batched()` (a queue
consumer's batch) the additions are summed and written once per row when the batch ends
(adapters/counter_batches.py)."""
from __future__ import annotations

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.adapters.counter_batches import BatchedAdds, add_into
from chalicelib.services.broadcast_ports import CampaignStats

_NO_VARIANT = "-"


def _pk(campaign: str) -> str:
    return f"campaign#{campaign}"


class DynamoDBCampaignStats(LazyTable, CampaignStats, BatchedAdds):
    def add(self, campaign: str, template: str, variant: str | None, counts: dict[str, int]) -> None:
        counts = {k: int(v) for k, v in counts.items() if v}
        if not counts:
            return
        pending = self._pending()
        if pending is not None:
            add_into(pending.setdefault((campaign, template, variant), {}), counts)
            return
        self._write(campaign, template, variant, counts)

    def _write_pending(self, pending: dict) -> None:
        for (campaign, template, variant), counts in pending.items():
            self._write(campaign, template, variant, counts)

    def _write(self, campaign: str, template: str, variant: str | None, counts: dict[str, int]) -> None:
        names = {f"#c{i}": name for i, name in enumerate(sorted(counts))}
        values = {f":c{i}": counts[name] for i, name in enumerate(sorted(counts))}
        self.table.update_item(
            Key={"channel": _pk(campaign), "sk": f"funnel#{template}#{variant or _NO_VARIANT}"},
            UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
                             + " SET template_name = :t, variant_name = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":t": template, ":v": variant or _NO_VARIANT})

    def read(self, campaign: str) -> list[dict]:
        rows = self.query_all(KeyConditionExpression=Key("channel").eq(_pk(campaign)) & Key("sk").begins_with("funnel#"))
        skip = {"channel", "sk", "template_name", "variant_name"}
        return [{"template": row.get("template_name", ""),
                 "variant": None if row.get("variant_name") in (None, _NO_VARIANT) else row["variant_name"],
                 "counts": {k: int(v) for k, v in row.items() if k not in skip}} for row in rows]
