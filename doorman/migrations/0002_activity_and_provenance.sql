-- The authentication activity log reads sessions; contacts say where each field came from.

ALTER TABLE widget_sessions
    ADD COLUMN auth_http_status  integer,
    ADD COLUMN auth_latency_ms   real,
    ADD COLUMN whitelist_note    text;

CREATE INDEX widget_sessions_bot_reason_created ON widget_sessions (bot_id, reason, created_at DESC);

-- {"name": "api", "email": "visitor", ...}: "api" for the business's answer, "visitor" for the form.
ALTER TABLE contacts ADD COLUMN field_sources jsonb NOT NULL DEFAULT '{}';

CREATE INDEX contacts_bot_created ON contacts (bot_id, created_at DESC, contact_id DESC);

-- Contact search (name, email, phone, identifier; substring, case-insensitive) by trigram index.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX contacts_search ON contacts USING gin (
    (coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone_number, '') || ' ' || identifier) gin_trgm_ops
);
