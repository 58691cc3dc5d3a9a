-- Workspaces: a business's bots and contacts, reached with the workspace's own API keys.
CREATE TABLE workspaces (
    workspace_id  uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Keys are shown once; only their SHA-256 is kept (they carry 256 random bits, so no slow hash is needed).
CREATE TABLE api_keys (
    key_id        uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    name          text NOT NULL,
    prefix        text NOT NULL UNIQUE,
    secret_hash   bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- NULL: a bot only the operator (DOORMAN_ADMIN_TOKEN) reaches.
ALTER TABLE bots ADD COLUMN workspace_id uuid REFERENCES workspaces ON DELETE CASCADE;
CREATE INDEX bots_workspace_created ON bots (workspace_id, created_at DESC, bot_id DESC);
