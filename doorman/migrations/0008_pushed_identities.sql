-- Server-to-server identity push: POST /v1/bots/{bot_id}/identities stores the business's profile of a
-- visitor and answers a single-use widget token (dmw_...); the widget opens with it and the verifier
-- verifies from this row, with no call to the business. Only the token's keyed hash is kept.
CREATE TABLE pushed_identities (
    token_hash  bytea PRIMARY KEY,           -- HMAC-SHA256 of the widget token (shared.crypto keyed_hash)
    bot_id      uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    identity    jsonb NOT NULL,              -- the profile, normalised as an Authentication URL's `data`
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_by     text,                        -- the session that owns it (the first to use it); NULL: unused
    used_at     timestamptz,
    CHECK (expires_at > created_at),
    CHECK ((used_by IS NULL) = (used_at IS NULL))
);
-- Pruning (with old sessions) by expiry; a bot's deletion cascades through bot_id.
CREATE INDEX pushed_identities_expires ON pushed_identities (expires_at);
CREATE INDEX pushed_identities_bot ON pushed_identities (bot_id);
