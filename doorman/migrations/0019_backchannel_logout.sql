-- OpenID Connect Back-Channel Logout and identity freshness (identity_source 'oidc').
--
-- A session verified through the bot's OpenID Provider records who the provider said signed in: its `sub` (the
-- contact's external id) and, when the provider told (an introspection answer's `sid`), the provider's session id.
-- A logout token for that sub or sid ends the bot's sessions carrying it. Erasing the contact clears both.
-- identity_expires_at: when the identity the session was verified from stops being good (a signed token's or an
-- introspected token's exp); the widget asks the host page for a fresh token before then.
ALTER TABLE widget_sessions
    ADD COLUMN provider_sub         text,
    ADD COLUMN provider_sid         text,
    ADD COLUMN identity_expires_at  timestamptz;

CREATE INDEX widget_sessions_provider_sub ON widget_sessions (bot_id, provider_sub) WHERE provider_sub IS NOT NULL;
CREATE INDEX widget_sessions_provider_sid ON widget_sessions (bot_id, provider_sid) WHERE provider_sid IS NOT NULL;

ALTER TABLE widget_sessions DROP CONSTRAINT widget_sessions_ended_by_check;
ALTER TABLE widget_sessions ADD CONSTRAINT widget_sessions_ended_by_check
    CHECK (ended_by IN ('visitor', 'revoked', 'backchannel_logout'));

-- The logout tokens accepted within the last 10 minutes, by issuer and jti: one replayed to any gateway replica
-- (or to another bot of the same provider) is refused. Rows older than that are pruned.
CREATE TABLE logout_tokens_seen (
    issuer   text NOT NULL,
    jti      text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX logout_tokens_seen_at ON logout_tokens_seen (seen_at);
