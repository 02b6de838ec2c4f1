"""Campaign funnel counters in DynamoDB, beside the channel counters in the channels table:
pk `channel` = `campaign#<campaign id>`, sk `funnel#<template>#<variant>`, one number
attribute per counter (`sent`, `skipped:holdout`…) added with atomic ADD. A campaign's funnel
is one query of its partition (a row per template and variant)."""
from __future__ import annotations

from boto3.dynamodb.conditions import Key

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.broadcast_ports import CampaignStats

_NO_VARIANT = "-"


def _pk(campaign: str) -> str:
    return f"campaign#{campaign}"


class DynamoDBCampaignStats(LazyTable, CampaignStats):
    def add(self, campaign: str, template: str, variant: str | None, counts: dict[str, int]) -> None:
        counts = {k: int(v) for k, v in counts.items() if v}
        if not counts:
            return
        names = {f"#c{i}": name for i, name in enumerate(sorted(counts))}
        values = {f":c{i}": counts[name] for i, name in enumerate(sorted(counts))}
        self.table.update_item(
            Key={"channel": _pk(campaign), "sk": f"funnel#{template}#{variant or _NO_VARIANT}"},
            UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
                             + " SET template_name = :t, variant_name = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":t": template, ":v": variant or _NO_VARIANT})

    def read(self, campaign: str) -> list[dict]:
        rows, params = [], {"KeyConditionExpression": Key("channel").eq(_pk(campaign)) & Key("sk").begins_with("funnel#")}
        while True:
            answer = self.table.query(**params)
            rows.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            params["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        skip = {"channel", "sk", "template_name", "variant_name"}
        return [{"template": row.get("template_name", ""),
                 "variant": None if row.get("variant_name") in (None, _NO_VARIANT) else row["variant_name"],
                 "counts": {k: int(v) for k, v in row.items() if k not in skip}} for row in rows]
