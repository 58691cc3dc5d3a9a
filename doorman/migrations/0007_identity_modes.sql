-- Contract, part 2: where a visitor's identity comes from, verifying through the business's outage,
-- and what a visitor who falls back is offered.
ALTER TABLE custom_auth_settings
    ADD COLUMN identity_source             text NOT NULL DEFAULT 'auth_url'
        CHECK (identity_source IN ('auth_url', 'signed_token')),
    -- signed_token: the JWT the widget carries, verified with no call to the business.
    ADD COLUMN token_algorithm             text NOT NULL DEFAULT 'HS256'
        CHECK (token_algorithm IN ('HS256', 'RS256', 'ES256')),
    ADD COLUMN token_jwks_url              text,
    ADD COLUMN token_issuer                text,
    ADD COLUMN token_max_lifetime_seconds  integer NOT NULL DEFAULT 3600
        CHECK (token_max_lifetime_seconds BETWEEN 1 AND 86400),
    ADD COLUMN token_claims                jsonb NOT NULL DEFAULT
        '{"id": "sub", "email": "email", "name": "name", "phone_number": "phone_number", "metadata": "metadata"}',
    -- HS256: the per-bot secret (Fernet-encrypted) tokens name by kid, and the previous one while it retires.
    ADD COLUMN token_secret_cipher         bytea,
    ADD COLUMN token_secret_kid            text,
    ADD COLUMN token_previous_cipher       bytea,
    ADD COLUMN token_previous_kid          text,
    ADD COLUMN token_previous_until        timestamptz,
    ADD COLUMN outage_grace_seconds        integer NOT NULL DEFAULT 0
        CHECK (outage_grace_seconds BETWEEN 0 AND 86400),
    ADD COLUMN collect_information         text NOT NULL DEFAULT 'required'
        CHECK (collect_information IN ('required', 'optional', 'off'));
