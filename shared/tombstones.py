"""What an erased contact leaves behind: a tombstone, its key only as a keyed hash.

Erasing a contact (``DELETE /v1/bots/{bot_id}/contacts/{contact_id}``, services/gateway/admin/erasure.py)
deletes its row and records a tombstone: the contact's key (bot, identify method, identifier,
external_workspace_id) as an HMAC under a key derived from ``DOORMAN_SECRET_KEY``, and when it was
erased. The contacts service then skips any event for that key that happened at or before the
erasure (a redelivery, a retry, a dead letter put back by ``doorman dlq replay``, a verification
the business answered before the erasure and that arrives late), while a verification that happened
after it makes a new contact. The rule is one clause, :data:`NOT_ERASED`, in each upsert; "when an
event happened" is its ``version_at``: the business's answer (``observed_at``) for a verified identity,
the form's submission (``occurred_at``) for a collected one.

A form (Collect Information) is filed under the bot's identify method when it has that field, else its
email, else its phone: which key its contact has depends on the bot's identify method when it was
processed. So a form is matched against the tombstones of every key it may be filed under (its email's
and its phone's, or its session's): a form from before the erasure of a contact it names is skipped
whatever the bot's identify method is now (services/contacts/repository.py: ``collected_keys``).

One race is closed after the upserts, in the statement that reads the batch's contact ids
(:data:`repository.CONTACT_IDS`): an upsert whose statement began just before the erasure committed
waits for the erased row's lock, finds it gone, and inserts it afresh from the old event; that
statement's later sibling sees the tombstone and deletes the row again in the same transaction.

The tombstone is matched under every configured key (:meth:`Secrets.keyed_hashes`), so it survives a
``DOORMAN_SECRET_KEY`` rotation for as long as the old key stays in the list.
"""

from __future__ import annotations

import json
from uuid import UUID

from shared.crypto import Secrets

ContactKey = tuple[UUID, str, str, str | None]  # bot, identify method, identifier, external_workspace_id

# The clause each upsert carries ($1 the bot, `hashes` the key's hashes, `at` when the event happened).
NOT_ERASED = """NOT EXISTS (SELECT 1 FROM contact_tombstones t
                   WHERE t.bot_id = $1 AND t.key_hash = ANY({hashes}::bytea[]) AND t.erased_at >= {at})"""


def _material(key: ContactKey) -> str:
    bot_id, method, identifier, workspace = key
    return json.dumps(["contact", str(bot_id), method, identifier, workspace], separators=(",", ":"))


def key_hash(secrets: Secrets, key: ContactKey) -> bytes:
    """What a tombstone stores: the key's hash under the first key."""
    return secrets.keyed_hash(_material(key))


def key_hashes(secrets: Secrets | None, key: ContactKey) -> list[bytes]:
    """What an upsert matches tombstones with: the key's hash under every key (none without secrets:
    callers that record no erased contact, such as tests of the upsert alone)."""
    return secrets.keyed_hashes(_material(key)) if secrets is not None else []
