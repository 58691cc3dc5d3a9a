-- Contract, part 3: standard identity providers. identity_source 'oidc' verifies the widget's access token at the
-- business's OpenID Provider (userinfo or RFC 7662 introspection, its endpoints found by discovery). The client
-- secret (Fernet-encrypted, write-only) is sent only to the origin of the issuer it was saved with, kept beside it.
ALTER TABLE custom_auth_settings DROP CONSTRAINT custom_auth_settings_identity_source_check;
ALTER TABLE custom_auth_settings
    ADD CONSTRAINT custom_auth_settings_identity_source_check
        CHECK (identity_source IN ('auth_url', 'signed_token', 'oidc')),
    ADD COLUMN oidc_issuer                    text,
    ADD COLUMN oidc_method                    text NOT NULL DEFAULT 'userinfo'
        CHECK (oidc_method IN ('userinfo', 'introspection')),
    ADD COLUMN oidc_client_id                 text,
    ADD COLUMN oidc_client_secret_cipher      bytea,
    ADD COLUMN oidc_client_secret_for_issuer  text,
    -- The client ids whose tokens the bot accepts (introspection's client_id or aud).
    ADD COLUMN accepted_clients               text[] NOT NULL DEFAULT '{}';
