-- Contract, part 3: a write-only secret stays where it was saved for. The header token is sent only to the
-- origins (scheme, host, port) of the auth_url and the whitelist api_url it was saved with: these columns
-- keep those two URLs (NULL: that URL was not set), written with the token and cleared with it.
ALTER TABLE custom_auth_settings
    ADD COLUMN header_token_for_auth_url  text,
    ADD COLUMN header_token_for_api_url   text;

-- Tokens stored before this rule are bound to the URLs their bots have now.
UPDATE custom_auth_settings
SET header_token_for_auth_url = auth_url, header_token_for_api_url = whitelist_api_url
WHERE header_token_cipher IS NOT NULL;
