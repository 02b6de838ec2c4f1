"""Contacts and identities in DynamoDB, through PynamoDB models.

A contact item holds the document (`body`: a compact JSON layout deflated against a preset
dictionary, see `contact_document`) and the digests of recently applied messages (`seen`,
raw bytes). Items written before that layout hold a zlib-compressed `doc` and are still read.

Race safety lives here: identity claims are conditional puts, contact writes are
conditional on `version`, and a merge is one transaction that saves the survivor and fences
the losers (marks them merged) so that any writer still holding a loser fails and re-reads.
All of it relies on DynamoDB applying each request atomically (a conditional write checks
and writes as one step; a transaction commits all of its writes or none); see
chalicelib/services/process_events.py for the guarantee built on it.
"""
from __future__ import annotations

import json
import zlib
from functools import lru_cache

from pynamodb.attributes import Attribute, UnicodeAttribute, VersionAttribute
from pynamodb.constants import BINARY
from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.contact_document import decode_body, encode_body, pack_digests, unpack_digests
from chalicelib.domain.contact import Contact
from chalicelib.services.ports import ConcurrentUpdate, ContactRepository, ContactScan
from chalicelib.services.privacy_ports import ContactErasure


def _conditional_failure(exc: Exception) -> bool:
    """The write lost a race: its condition failed, or (on DynamoDB) a transaction was under
    way on the item (a merge in progress), which is the same race seen a moment earlier."""
    code = getattr(exc, "cause_response_code", None)
    if code in ("ConditionalCheckFailedException", "TransactionConflictException"):
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


def _transaction_lost_race(exc: TransactWriteError) -> bool:
    """The transaction was cancelled because what it read changed (ConditionalCheckFailed)
    or because another transaction or write was under way on one of its items
    (TransactionConflict, DynamoDB's answer to concurrent transactions on an item): either
    way nothing was written and the caller reads again and retries."""
    if _conditional_failure(exc):
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "TransactionConflict" for r in reasons)


class CompressedJSONAttribute(Attribute[dict]):
    """The profile document as zlib-compressed JSON: counters and identifiers repeat a lot,
    so a profile costs a third of the write units it would as plain attributes."""

    attr_type = BINARY

    def serialize(self, value: dict) -> bytes:
        return zlib.compress(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 6)

    def deserialize(self, value: bytes) -> dict:
        return json.loads(zlib.decompress(value).decode("utf-8"))


class RawBinaryAttribute(Attribute[bytes]):
    """Bytes stored as they are (PynamoDB's BinaryAttribute would base64 them again)."""

    attr_type = BINARY

    def serialize(self, value: bytes) -> bytes:
        return value

    def deserialize(self, value: bytes) -> bytes:
        return value


@lru_cache(maxsize=None)
def contact_model(table_name: str, host: str | None = None, region: str | None = None) -> type[Model]:
    class ContactItem(Model):
        class Meta:
            pass

        id = UnicodeAttribute(hash_key=True)
        version = VersionAttribute()
        merged_into = UnicodeAttribute(null=True)
        doc = CompressedJSONAttribute(null=True)  # the layout before `body` and `seen`: read only
        body = RawBinaryAttribute(null=True)
        seen = RawBinaryAttribute(null=True)

    ContactItem.Meta.table_name = table_name
    ContactItem.Meta.host = host
    if region:
        ContactItem.Meta.region = region
    return ContactItem


@lru_cache(maxsize=None)
def identity_model(table_name: str, host: str | None = None, region: str | None = None) -> type[Model]:
    class IdentityItem(Model):
        class Meta:
            pass

        identifier = UnicodeAttribute(hash_key=True)
        contact_id = UnicodeAttribute()

    IdentityItem.Meta.table_name = table_name
    IdentityItem.Meta.host = host
    if region:
        IdentityItem.Meta.region = region
    return IdentityItem


class DynamoDBContactRepository(ContactRepository, ContactScan, ContactErasure):
    def __init__(self, contacts_table: str, identities_table: str, host: str | None = None,
                 region: str | None = None):
        self.Contact = contact_model(contacts_table, host, region)
        self.Identity = identity_model(identities_table, host, region)
        self._connection = Connection(host=host, region=region) if region else Connection(host=host)

    # -- identities --------------------------------------------------------------------

    def lookup(self, identifiers: list[str], consistent: bool = False) -> dict[str, str]:
        if not identifiers:
            return {}
        return {
            item.identifier: item.contact_id
            for item in self.Identity.batch_get(list(dict.fromkeys(identifiers)), consistent_read=consistent)
        }

    def claim(self, identifier: str, contact_id: str) -> str:
        """A put conditional on the identifier being unclaimed: of racing claimers, one
        wins and the others learn the winner (and so never both own an identifier)."""
        try:
            self.Identity(identifier, contact_id=contact_id).save(
                condition=self.Identity.identifier.does_not_exist()
            )
            return contact_id
        except PutError as exc:
            if not _conditional_failure(exc):
                raise
        try:
            return self.Identity.get(identifier, consistent_read=True).contact_id
        except DoesNotExist:
            raise ConcurrentUpdate(f"{identifier} vanished while being claimed") from None

    def repoint(self, identifier: str, from_id: str, to_id: str) -> bool:
        """Conditional on the identifier still pointing at `from_id`: callers only move it
        from a merged contact to one its merge chain leads to, so a late or repeated
        re-point never moves an identifier back, nor away from a newer owner."""
        try:
            self.Identity(identifier).update(
                actions=[self.Identity.contact_id.set(to_id)],
                condition=self.Identity.contact_id == from_id,
            )
            return True
        except UpdateError as exc:
            if _conditional_failure(exc):
                return False
            raise

    # -- contacts ----------------------------------------------------------------------

    def _to_domain(self, item) -> Contact:
        if item.body is not None:
            doc = decode_body(item.body, item.id)
            doc["recent"] = unpack_digests(item.seen or b"")
        else:
            doc = item.doc or {}
        return Contact.from_document(item.id, doc, item.version, item.merged_into)

    def _to_item(self, contact: Contact):
        doc = contact.to_document()
        digests = doc.pop("recent")
        item = self.Contact(contact.id, merged_into=contact.merged_into, body=encode_body(doc, contact.id),
                            seen=pack_digests(digests) or None)
        if contact.version is not None:
            item.version = contact.version
        return item

    def get(self, contact_id: str, consistent: bool = False) -> Contact | None:
        try:
            return self._to_domain(self.Contact.get(contact_id, consistent_read=consistent))
        except DoesNotExist:
            return None

    def create(self, contact: Contact) -> None:
        contact.version = None
        self.save(contact)

    def save(self, contact: Contact) -> None:
        item = self._to_item(contact)
        try:
            item.save()  # VersionAttribute adds the condition and increments
        except PutError as exc:
            if _conditional_failure(exc):
                raise ConcurrentUpdate(f"contact {contact.id} changed meanwhile") from None
            raise
        contact.version = item.version

    def merge(self, survivor: Contact, losers: list[Contact]) -> None:
        """One TransactWriteItems: the survivor, holding every loser's state, and each loser
        marked `merged_into` the survivor, all conditional on the versions read. Either all
        of it is written or none (ConcurrentUpdate), so a loser's counts are absorbed once
        and a write to a loser made after it was read cancels the merge instead of being
        lost. Identifiers are not part of it: they are re-pointed afterwards by the caller
        (a reader meanwhile follows `merged_into`), which keeps the merge within one
        transaction whatever the number of identifiers."""
        survivor_item = self._to_item(survivor)
        loser_items = []
        for loser in losers:
            item = self._to_item(loser)
            item.merged_into = survivor.id
            loser_items.append(item)
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(survivor_item)
                for item in loser_items:
                    transaction.save(item)
        except TransactWriteError as exc:
            if _transaction_lost_race(exc):
                names = ", ".join(loser.id for loser in losers)
                raise ConcurrentUpdate(f"contact {survivor.id} or one of {names} changed during the merge") from None
            raise
        survivor.version = survivor_item.version
        for loser, item in zip(losers, loser_items):
            loser.version = item.version
            loser.merged_into = survivor.id

    def scan(self, cursor: str | None, limit: int) -> tuple[list[Contact], str | None]:
        """Live contacts (merged-away ones skipped), `limit` items read per call."""
        start = {"id": {"S": cursor}} if cursor else None
        result = self.Contact.scan(limit=limit, last_evaluated_key=start, page_size=limit)
        contacts = [self._to_domain(item) for item in result if not item.merged_into]
        last = result.last_evaluated_key
        return contacts, (last["id"]["S"] if last else None)

    def get_many(self, contact_ids: list[str]) -> dict[str, Contact]:
        """One BatchGetItem per 100 ids (PynamoDB pages them and asks again for the keys
        DynamoDB left unprocessed); ids with no item are absent from the answer."""
        if not contact_ids:
            return {}
        return {item.id: self._to_domain(item) for item in self.Contact.batch_get(list(dict.fromkeys(contact_ids)))}

    # -- erasure (services/privacy.py) ---------------------------------------------------

    def forget_identifier(self, identifier: str, contact_id: str) -> bool:
        try:
            self.Identity(identifier).delete(condition=self.Identity.contact_id == contact_id)
            return True
        except DeleteError as exc:
            if _conditional_failure(exc):
                return False  # gone already, or claimed by someone else since
            raise

    def delete_contact(self, contact_id: str) -> bool:
        try:
            self.Contact(contact_id).delete(condition=self.Contact.id.exists(), add_version_condition=False)
            return True
        except DeleteError as exc:
            if _conditional_failure(exc):
                return False
            raise

