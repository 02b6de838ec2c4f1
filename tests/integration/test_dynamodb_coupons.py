"""Coupon pools on DynamoDB (moto): the items of adapters/dynamodb_coupons.py, idempotent
claims, and claims racing from threads that never hand one code out twice.

The races run against moto's server applying one DynamoDB request at a time (as DynamoDB
applies each atomically; see tests/integration/test_concurrency_dynamodb.py): requests of
different threads still interleave in any order."""
from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamodb_coupons import DynamoDBCouponStore
from chalicelib.services.coupons import CouponPools
from tests.integration.test_concurrency_dynamodb import AtomicMotoServer

TABLE = "mercurio-test-enrollments"


def create_table(ddb) -> None:
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])


@pytest.fixture
def local_table():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client)
        yield client


def items(client, pool: str) -> dict[str, dict]:
    """The pool's items by sort key."""
    return {i["sk"]["S"]: {k: v["S"] for k, v in i.items()} for i in client.scan(TableName=TABLE)["Items"]
            if i["pk"]["S"] == f"p#{pool}"}


def test_codes_claims_and_counts_are_items_of_the_pools_partition(local_table):
    pools = CouponPools(DynamoDBCouponStore(TABLE))
    assert pools.add("birthday", ["B-1", "B-2", "B-2", "B-3"]) == {"added": 3, "duplicates": 1, "problems": []}
    assert pools.add("other", ["B-1"])["added"] == 1  # pools are separate
    code = pools.claim("birthday", "enr-1:birthday-email:0")
    assert code in ("B-1", "B-2", "B-3")
    stored = items(local_table, "birthday")
    assert stored["claim#enr-1:birthday-email:0"] == {"pk": "p#birthday", "sk": "claim#enr-1:birthday-email:0",
                                                      "code": code}
    assert stored[f"used#{code}"] == {"pk": "p#birthday", "sk": f"used#{code}", "claim_id": "enr-1:birthday-email:0"}
    assert sorted(sk for sk in stored if sk.startswith("free#")) == sorted(f"free#{c}" for c in ("B-1", "B-2", "B-3")
                                                                           if c != code)
    assert set(items(local_table, "other")) == {"free#B-1"}
    assert pools.claim("birthday", "enr-1:birthday-email:0") == code  # the same claim, the same code
    assert pools.counts("birthday") == {"free": 2, "claimed": 1}
    assert pools.counts("other") == {"free": 1, "claimed": 0}
    assert pools.add("birthday", [code, "B-4"]) == {"added": 1, "duplicates": 1, "problems": []}


def test_the_last_code_goes_once_and_a_code_uploaded_again_after_use_is_never_handed_out(local_table):
    store = DynamoDBCouponStore(TABLE)
    pools = CouponPools(store)
    pools.add("p", ["ONLY"])
    assert pools.claim("p", "a") == "ONLY"
    assert pools.claim("p", "b") is None
    # Two uploads that raced past the duplicate check: the used code is free again.
    store.add_free("p", ["ONLY"])
    assert pools.claim("p", "c") is None
    assert "free#ONLY" not in items(local_table, "p")  # dropped when found used
    assert pools.counts("p") == {"free": 0, "claimed": 1}


def test_counts_read_every_page(local_table, monkeypatch):
    store = DynamoDBCouponStore(TABLE)
    pools = CouponPools(store)
    pools.add("p", [f"C-{i}" for i in range(25)])
    pages = []
    query = store.table.query

    def small_pages(**params):
        pages.append(params.get("ExclusiveStartKey"))
        return query(**params, Limit=10)

    monkeypatch.setattr(store.table, "query", small_pages)
    assert store.counts("p") == (25, 0)
    assert len(pages) == 3 + 1  # three pages of free codes, one (empty) of claims


@pytest.fixture(scope="module")
def server():
    atomic = AtomicMotoServer()
    atomic.start()
    yield atomic
    atomic.stop()


def test_claims_racing_from_threads_never_hand_one_code_twice_and_retries_get_their_code(server):
    ddb = boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1")
    create_table(ddb)
    codes = [f"RACE-{i:03}" for i in range(40)]
    CouponPools(DynamoDBCouponStore(TABLE, resource=boto3.resource("dynamodb", endpoint_url=server.url,
                                                                    region_name="us-east-1"), client=ddb)
                ).add("race", codes)
    workers, per_worker = 6, 10
    got: dict[str, str | None] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def worker_pools() -> CouponPools:
        # One session per thread (boto3 sessions are not shared across threads), made here.
        session = boto3.session.Session(region_name="us-east-1")
        store = DynamoDBCouponStore(TABLE, resource=session.resource("dynamodb", endpoint_url=server.url),
                                    client=session.client("dynamodb", endpoint_url=server.url))
        store.table  # noqa: B018 - the table resource, made before the threads start
        return CouponPools(store)

    def run(pools: CouponPools, claim_ids: list[str], into: dict) -> None:
        barrier.wait()
        try:
            for claim_id in claim_ids:
                into[claim_id] = pools.claim("race", claim_id)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    def race(claims_of_worker) -> list[dict]:
        results = [{} for _ in claims_of_worker]
        threads = [threading.Thread(target=run, args=(worker_pools(), ids, results[n]))
                   for n, ids in enumerate(claims_of_worker)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        return results

    claims = [[f"enr-{w}-{i}:birthday-email:0" for i in range(per_worker)] for w in range(workers)]
    for result in race(claims):
        got.update(result)
    handed = [code for code in got.values() if code is not None]
    assert len(got) == workers * per_worker
    assert sorted(handed) == codes  # every code handed out, each exactly once
    assert list(got.values()).count(None) == workers * per_worker - len(codes)

    # The same claims again from other threads: the codes they got, nothing new.
    for result in race([claims[(w + 1) % workers] for w in range(workers)]):
        assert result == {claim_id: got[claim_id] for claim_id in result}

    # New claims, each made by every thread at once (a retried send racing its first try):
    # one code per claim, the same for every thread.
    more = [f"MORE-{i:02}" for i in range(12)]
    pools = worker_pools()
    pools.add("race", more)
    fresh = [f"enr-x-{i}:birthday-email:0" for i in range(12)]
    results = race([fresh[w * 2:] + fresh[:w * 2] for w in range(workers)])
    answers = {claim_id: {result[claim_id] for result in results} for claim_id in fresh}
    assert all(len(codes_seen) == 1 for codes_seen in answers.values()), answers
    assert sorted(code for codes_seen in answers.values() for code in codes_seen) == more
    assert pools.counts("race") == {"free": 0, "claimed": len(codes) + len(more)}
