"""What a configuration set's SNS event destination does on AWS, for the emulator, which has
none: for every email the emulator accepted, publish the SES event (the documented
`eventType` record) to the feedback topic — Delivery for ordinary addresses, and what the
mailbox simulator's addresses stand for:

    bounce@simulator.amazonses.com      Bounce (Permanent, General)
    complaint@simulator.amazonses.com   Delivery, then Complaint (abuse)
    ooto@simulator.amazonses.com        Delivery (the out-of-office reply is not an SES event)
    suppressionlist@simulator…          Bounce (Permanent, OnAccountSuppressionList)
    success@simulator.amazonses.com     Delivery

`mail.messageId` is the id the emulator answered the send with, which Mercurio keeps as the
message's provider id, so the feedback queue's consumer finds the message as it does on AWS.
(The emulator's own identity notifications carry a fixed example message and id, which name
neither the message nor the address, so the local stack does not subscribe to them.)
Lives in local/ and never ships to Lambda.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.request
import uuid
from datetime import datetime, timezone
from email.utils import parseaddr

from local.polling import start_polling

log = logging.getLogger("mercurio.local.ses_events")
SIMULATOR = "simulator.amazonses.com"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def events_for(message: dict, at: str) -> list[dict]:
    """The SES event records one accepted email produces (the emulator's RawMessage item:
    id, source, destinations)."""
    recipients = [parseaddr(a)[1] for a in message.get("destinations") or () if parseaddr(a)[1]]
    recipients = list(dict.fromkeys(recipients))
    mail = {"timestamp": at, "messageId": message["id"], "source": parseaddr(message.get("source") or "")[1],
            "destination": recipients, "tags": {}}
    records = []
    delivered = [r for r in recipients if r.split("@")[0] not in ("bounce", "suppressionlist")
                 or not r.endswith("@" + SIMULATOR)]
    if delivered:
        records.append({"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": at, "recipients": delivered, "processingTimeMillis": 1,
            "smtpResponse": "250 2.6.0 Message received"}})
    for recipient in recipients:
        local, _, domain = recipient.partition("@")
        if domain != SIMULATOR:
            continue
        if local in ("bounce", "suppressionlist"):
            records.append({"eventType": "Bounce", "mail": mail, "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General" if local == "bounce" else "OnAccountSuppressionList",
                "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1",
                                       "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                "timestamp": at, "feedbackId": f"local-{uuid.uuid4()}"}})
        elif local == "complaint":
            records.append({"eventType": "Complaint", "mail": mail, "complaint": {
                "complainedRecipients": [{"emailAddress": recipient}], "complaintFeedbackType": "abuse",
                "timestamp": at, "feedbackId": f"local-{uuid.uuid4()}"}})
    return records


class SesEventDestination:
    """Polls the emulator's sent mail and publishes each new email's events once."""

    def __init__(self, emulator_url: str, topic_arn: str, sns=None, interval: float = 0.2):
        import boto3

        self.emulator_url, self.topic_arn, self.interval = emulator_url.rstrip("/"), topic_arn, interval
        self.sns = sns or boto3.client("sns", endpoint_url=emulator_url)
        self.ses = boto3.client("ses", endpoint_url=emulator_url)
        self._sent_seen: float | None = None
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        # The emulator's full state (data.json) is costly to build: read it only when its count
        # of sent emails moved.
        sent = self.ses.get_send_quota()["SentLast24Hours"]
        if sent == self._sent_seen:
            return 0
        with urllib.request.urlopen(f"{self.emulator_url}/moto-api/data.json", timeout=10) as response:
            data = json.loads(response.read())
        self._sent_seen = sent
        published = 0
        for item in data.get("ses", {}).get("RawMessage", []):
            if item.get("id") in self._seen:
                continue
            self._seen.add(item.get("id"))
            for record in events_for(item, _now()):
                self.sns.publish(TopicArn=self.topic_arn, Message=json.dumps(record))
                published += 1
        return published

    def start(self) -> None:
        self._thread = start_polling("ses-events", self.poll_once, self._stop, self.interval, log)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

