-- Verifying through the business's outage (issue 13): the grace cache, the circuit breakers'
-- recorded state, and the `degraded` flag on sessions and contacts.

-- A session verified from the grace cache (its Authentication URL was unavailable), and one whose
-- identity call was not made because the breaker for the URL's host was open.
ALTER TABLE widget_sessions
    ADD COLUMN degraded      boolean NOT NULL DEFAULT false,
    ADD COLUMN circuit_open  boolean NOT NULL DEFAULT false;

-- The contact's last verification was degraded.
ALTER TABLE contacts ADD COLUMN degraded boolean NOT NULL DEFAULT false;

-- Identities verified by the Authentication URL, by access token, for bots with outage_grace_seconds > 0.
-- The token is kept only as a keyed hash (HMAC under a key derived from DOORMAN_SECRET_KEY), never in clear.
-- Written by the verifier (services/verifier/grace.py); a rejection of the token marks its row.
CREATE TABLE grace_identities (
    bot_id           uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    token_hash       bytea NOT NULL,
    identify_method  text,
    identity         jsonb,            -- null once the token was rejected after its last verification
    verified_at      timestamptz,      -- when the business last verified this token
    rejected_at      timestamptz,      -- when the business last rejected it
    PRIMARY KEY (bot_id, token_hash)
);
CREATE INDEX grace_identities_age ON grace_identities (greatest(verified_at, rejected_at));

-- Each verifier replica's circuit breaker per business host, written on every transition (the state
-- itself lives in the replica's memory), so the admin API and page can show it.
CREATE TABLE auth_breakers (
    host         text NOT NULL,        -- host:port of the Authentication URL
    replica      text NOT NULL,        -- the verifier replica holding this breaker
    state        text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    since        timestamptz NOT NULL,
    opened       integer NOT NULL DEFAULT 0,  -- times this replica opened it
    detail       text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, replica)
);
