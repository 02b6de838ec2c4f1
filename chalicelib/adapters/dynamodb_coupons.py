"""Coupon pools in the enrollments table (one partition per pool, `pk = p#<pool>`):

- `sk = free#<code>`: a code waiting to be handed out;
- `sk = claim#<claim id>`: the code a claim got (`code`);
- `sk = used#<code>`: the code was handed out (`claim_id`), kept so that uploading it again
  never makes it free a second time.

Taking a code is one TransactWriteItems: delete `free#<code>` if it exists, put
`claim#<claim id>` if it does not exist, put `used#<code>` if it does not exist. Either the
claim gets the code and nobody else ever can, or nothing changes and the cancellation reasons
say which condition failed (a transaction conflicting with another claim's is a lost race
too). Counts are Select=COUNT queries on the `free#` and `claim#` ranges.
"""
from __future__ import annotations

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chalicelib.adapters._dynamodb import LazyTable
from chalicelib.services.coupon_ports import CLAIM_EXISTS, CODE_GONE, CODE_USED, TAKEN, CouponStore

BATCH_GET_KEYS = 100  # BatchGetItem's limit


def _pk(pool: str) -> str:
    return f"p#{pool}"


class DynamoDBCouponStore(LazyTable, CouponStore):
    def known(self, pool: str, codes: list[str]) -> set[str]:
        found: set[str] = set()
        keys = [{"pk": _pk(pool), "sk": f"{state}#{code}"} for code in codes for state in ("free", "used")]
        client = self.table.meta.client  # the resource's own client: Python values in and out
        for start in range(0, len(keys), BATCH_GET_KEYS):
            request = {self.table_name: {"Keys": keys[start:start + BATCH_GET_KEYS], "ConsistentRead": True,
                                         "ProjectionExpression": "sk"}}
            while request:
                answer = client.batch_get_item(RequestItems=request)
                found.update(item["sk"].split("#", 1)[1] for item in answer["Responses"].get(self.table_name, []))
                request = answer.get("UnprocessedKeys") or None
        return found

    def add_free(self, pool: str, codes: list[str]) -> None:
        with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
            for code in codes:
                batch.put_item(Item={"pk": _pk(pool), "sk": f"free#{code}", "code": code})

    def claimed(self, pool: str, claim_id: str) -> str | None:
        item = self.table.get_item(Key={"pk": _pk(pool), "sk": f"claim#{claim_id}"}, ConsistentRead=True).get("Item")
        return item["code"] if item else None

    def free_codes(self, pool: str, limit: int) -> list[str]:
        answer = self.table.query(KeyConditionExpression=Key("pk").eq(_pk(pool)) & Key("sk").begins_with("free#"),
                                  ConsistentRead=True, Limit=limit, ProjectionExpression="code")
        return [item["code"] for item in answer.get("Items", [])]

    def take(self, pool: str, code: str, claim_id: str) -> str:
        pk = {"S": _pk(pool)}
        absent = {"ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Delete": {"TableName": self.table_name, "Key": {"pk": pk, "sk": {"S": f"free#{code}"}},
                            "ConditionExpression": "attribute_exists(pk)"}},
                {"Put": {"TableName": self.table_name, **absent,
                         "Item": {"pk": pk, "sk": {"S": f"claim#{claim_id}"}, "code": {"S": code}}}},
                {"Put": {"TableName": self.table_name, **absent,
                         "Item": {"pk": pk, "sk": {"S": f"used#{code}"}, "claim_id": {"S": claim_id}}}},
            ])
            return TAKEN
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "TransactionConflict" in reasons:
                return CODE_GONE  # another claim's transaction was on the same code: a lost race
            if len(reasons) != 3 or "ConditionalCheckFailed" not in reasons:
                raise  # cancelled for another reason (throttling...): the caller's retry covers it
        free_gone, claim_exists, used = (reason == "ConditionalCheckFailed" for reason in reasons)
        if claim_exists:
            return CLAIM_EXISTS
        if used and not free_gone:
            # Handed out before and uploaded again: it must never go a second time.
            self.table.delete_item(Key={"pk": _pk(pool), "sk": f"free#{code}"})
            return CODE_USED
        return CODE_GONE

    def counts(self, pool: str) -> tuple[int, int]:
        return self._count(pool, "free#"), self._count(pool, "claim#")

    def _count(self, pool: str, prefix: str) -> int:
        params = {"KeyConditionExpression": Key("pk").eq(_pk(pool)) & Key("sk").begins_with(prefix),
                  "Select": "COUNT"}
        total = 0
        while True:
            answer = self.table.query(**params)
            total += answer.get("Count", 0)
            if "LastEvaluatedKey" not in answer:
                return total
            params["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
