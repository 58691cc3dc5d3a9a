-- Bots, their Custom Authentication settings, contacts and widget sessions.

CREATE TABLE bots (
    bot_id      uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE custom_auth_settings (
    bot_id               uuid PRIMARY KEY REFERENCES bots ON DELETE CASCADE,
    enabled              boolean NOT NULL DEFAULT false,
    auth_url             text,
    header_token_cipher  bytea,          -- Fernet token; never plain text
    identify_method      text NOT NULL DEFAULT 'id' CHECK (identify_method IN ('id', 'email', 'phone_number')),
    request_fields       text[] NOT NULL DEFAULT '{}',
    whitelist_enabled    boolean NOT NULL DEFAULT false,
    whitelist_source     text NOT NULL DEFAULT 'manual' CHECK (whitelist_source IN ('manual', 'api')),
    whitelist_domains    text[] NOT NULL DEFAULT '{}',
    whitelist_api_url    text,
    revision             bigint NOT NULL DEFAULT 1,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    contact_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bot_id            uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    identify_method   text NOT NULL,
    identifier        text NOT NULL,
    external_id       text,
    name              text,
    email             text,
    phone_number      text,
    country_code      text,
    avatar            text,
    label             text,
    metadata          jsonb NOT NULL DEFAULT '{}',
    verified          boolean NOT NULL DEFAULT false,
    -- Orders updates: an event older than (version_at, version_event) changes nothing.
    version_at        timestamptz NOT NULL,
    version_event     uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_verified_at  timestamptz,
    UNIQUE (bot_id, identify_method, identifier)
);

CREATE TABLE widget_sessions (
    session_id   text PRIMARY KEY,
    bot_id       uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    origin       text,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified', 'fallback')),
    reason       text,
    detail       text,
    contact_id   uuid REFERENCES contacts ON DELETE SET NULL,
    watcher      text,                     -- gateway replica holding the SSE stream, if any
    created_at   timestamptz NOT NULL DEFAULT now(),
    deadline_at  timestamptz NOT NULL,
    resolved_at  timestamptz
);

CREATE INDEX widget_sessions_pending_deadline ON widget_sessions (deadline_at) WHERE status = 'pending';
CREATE INDEX widget_sessions_bot_created ON widget_sessions (bot_id, created_at DESC);
