-- The identity lifecycle (issue 14): erasure with a tombstone, and identity changes recorded on the contact.

-- DELETE /v1/bots/{bot_id}/contacts/{contact_id} deletes the contact's row (and what is tied to it) and
-- leaves this: the erased contact's key (bot, identify method, identifier, external_workspace_id) only as
-- a keyed hash (HMAC under a key derived from DOORMAN_SECRET_KEY, shared.crypto), so the tombstone itself
-- holds no personal data. The contacts service skips an event for that key that happened at or before
-- erased_at (a replay, a retry, a dead letter put back, a late delivery); a verification that happened
-- after it makes a new contact.
CREATE TABLE contact_tombstones (
    contact_id  uuid PRIMARY KEY,        -- the erased contact's id (opaque): its routes answer 404 contact_erased
    bot_id      uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    key_hash    bytea NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_tombstones_key ON contact_tombstones (bot_id, key_hash);

-- Identity changes are recorded, not silent:
-- identity_history: [{kind: "identity_changed", at, event_id, session_id, old_external_id, new_external_id},
--                    {kind: "took_over_unverified", at, event_id, session_id}], oldest first, the last 50;
-- typed: what the visitor typed in the Collect Information form ({name, email, phone_number, country_code})
--        before a verified identity took the contact over (kept so agents can tell it was never verified);
-- taken_over_at: when that happened (null: never). Written by the contacts service's verified upsert.
ALTER TABLE contacts
    ADD COLUMN identity_history  jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN typed             jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN taken_over_at     timestamptz;
