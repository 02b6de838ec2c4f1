"""The local stack's SES set-up: what an operator does once on AWS before sending.

SES (and the emulator) sends only from verified identities, so the domains the templates
and the default sender write from are verified. (What happens to each email afterwards
reaches the feedback queue through local/ses_events.py, the emulator's stand-in for a
configuration set's event destination.)
"""
from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path

_FROM = re.compile(r"^from:\s*(.+?)\s*$", re.M)


def sending_domains(templates: Path, default_from: str) -> list[str]:
    """The domains of every `from:` in the templates' front matter, and of the default sender."""
    senders = [default_from]
    for path in sorted(templates.glob("*.j2")):
        head = path.read_text(encoding="utf-8").split("\n---", 1)[0]
        senders += [m.strip().strip("\"'") for m in _FROM.findall(head)]
    domains = []
    for sender in senders:
        address = parseaddr(sender)[1]
        if "@" in address:
            domain = address.rsplit("@", 1)[1].lower()
            if domain not in domains:
                domains.append(domain)
    return domains


def verify_domains(ses, domains: list[str]) -> None:
    for domain in domains:
        ses.verify_domain_identity(Domain=domain)
