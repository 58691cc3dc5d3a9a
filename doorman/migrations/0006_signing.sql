-- Signed identity calls: a per-bot HMAC secret (Fernet-encrypted), and the previous one while it retires.
ALTER TABLE custom_auth_settings
    ADD COLUMN signing_secret_cipher    bytea,
    ADD COLUMN signing_previous_cipher  bytea,
    ADD COLUMN signing_previous_until   timestamptz;
