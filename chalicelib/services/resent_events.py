"""Resent events: one messageId, one row in the event log and one entry on the timeline.

Segment de-duplicates on messageId alone. A Segment SDK that sends the same messageId twice
(two calls, a retry after a timeout) stamps each send with its own time, so the two land
under different sort keys (`<timestamp>#<messageId>`) and both are stored. The contact
applies the messageId once (it remembers the last ones it applied), so counters and
segments already count it once; the log and the timeline must too.

Where it is done, and why there:
- Not on the request path: ingest stays one write per event (a conditional put on a
  messageId item, or a read before the write, would double its cost for every event to
  catch a rare resend).
- In the stream handler, after an INSERT is processed and the contact says it had already
  applied that messageId (`Outcome.applied` is False): the rows of that partition stamped
  within a day carrying the messageId are read, the first received is kept and the others
  deleted. The reads and the delete happen only for those records, never for a new event.
  A redelivered stream record also reports "already applied"; it then finds its row alone
  and deletes nothing, so redelivery stays harmless.
- The timeline shows one entry per messageId (services/contacts.py), which covers the
  moment between the second write and its clean-up, and a resend that comes after the
  contact has forgotten the messageId (it remembers those of its last batch and 16 older
  ones: contact_state.RECENT_IDS).
"""
from __future__ import annotations

from chalicelib.services.ports import ResentEvents


def discard_if_resent(store: ResentEvents, keys: dict, event: dict, applied: bool) -> int:
    """Call for every INSERT record of the events table once its event was processed:
    `keys` are the record's keys (`pk`, `sk`), `applied` whether the contact applied the
    event just now. Returns how many resent rows were deleted."""
    message_id = event.get("messageId")
    partition, sort = keys.get("pk"), keys.get("sk")
    if applied or not all(isinstance(v, str) and v for v in (message_id, partition, sort)):
        return 0
    return store.discard_resent(partition, sort, message_id)
