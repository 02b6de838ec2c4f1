"""Admin routes of coupon pools (services/coupons.py):

    PUT /v1/admin/coupon-pools/{pool}   add codes: text/plain or text/csv (one code per line),
                                        or JSON {"codes": [...]}; answers what was added, the
                                        duplicates and the pool's counts, or 400 naming every
                                        bad line (and then nothing is added)
    GET /v1/admin/coupon-pools/{pool}   {"pool", "free", "claimed"}
"""
from __future__ import annotations

import json

from chalice import Blueprint

from chalicelib.entrypoints.http import admin_call, json_body, json_response
from chalicelib.entrypoints.runtime import services
from chalicelib.services.contacts import BadQuery

coupons_api = Blueprint(__name__)
ANY = ["*/*"]
MAX_UPLOAD_BYTES = 1024 * 1024


def _codes(request) -> tuple[list, object]:
    """The lines of the upload, and how to name a line in a problem."""
    from chalicelib.services.coupons import lines_of_csv, lines_of_text

    raw = request.raw_body or b""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise BadQuery(f"an upload is at most {MAX_UPLOAD_BYTES // 1024} KB: upload the codes in several parts")
    media = (request.headers.get("content-type") or "text/plain").split(";")[0].strip().lower()
    if media == "application/json":
        body = json_body(request)
        unknown = [key for key in body if key != "codes"]
        if unknown or not isinstance(body.get("codes"), list):
            raise BadQuery('the JSON body is {"codes": ["CODE-1", "CODE-2", ...]}')
        return body["codes"], lambda index: f"codes[{index}]"
    if media not in ("text/plain", "text/csv"):
        raise BadQuery(f"Content-Type {media} is not accepted: send text/plain or text/csv (one code per line) "
                       'or application/json ({"codes": [...]})')
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadQuery(f"the codes are UTF-8 text (byte {exc.start} is not)") from None
    return (lines_of_csv(text) if media == "text/csv" else lines_of_text(text)), None


@coupons_api.route("/v1/admin/coupon-pools/{pool}", methods=["GET", "PUT"], content_types=ANY)
def coupon_pool(pool):
    request = coupons_api.current_request
    if request.method == "GET":
        return admin_call(request, lambda r: {"pool": pool, **services().coupon_pools.counts(pool)})
    refused = {}

    def upload(r):
        pools = services().coupon_pools
        codes, place = _codes(r)
        result = pools.add(pool, codes, place)
        answer = {"pool": pool, **result, **pools.counts(pool)}
        if result["problems"]:
            refused["problems"] = result["problems"]
        return answer

    response = admin_call(request, upload)
    if response.status_code == 200 and refused:
        body = json.loads(response.body)
        return json_response(400, {"error": "nothing was added: " + "; ".join(refused["problems"]), **body})
    return response
