-- OpenCX's modes: what a visitor who fell back is offered, and the business's own workspaces.

-- The bot's collect_information mode as it was when the session fell back (NULL unless status is
-- 'fallback'): the widget's view shows it, and POST .../contact is refused for 'off'. Captured once,
-- so the view costs no join and what the widget was told is what the server enforces.
ALTER TABLE widget_sessions
    ADD COLUMN collect_information text CHECK (collect_information IN ('required', 'optional', 'off'));

-- Business workspaces (OpenCX's externalId; not Doorman's own tenant `workspaces`): the business's
-- answer may carry data.external_workspace_id, and a contact is then unique per
-- (bot, external_workspace_id, identifier). NULL (no workspace) is one partition of its own, so a
-- contact without one keeps today's key: NULLS NOT DISTINCT (PostgreSQL 15+). The key keeps
-- (bot_id, identify_method, identifier) as its prefix, so lookups by that prefix still use it.
ALTER TABLE contacts ADD COLUMN external_workspace_id text;
ALTER TABLE contacts DROP CONSTRAINT contacts_bot_id_identify_method_identifier_key;
ALTER TABLE contacts ADD CONSTRAINT contacts_bot_identifier_workspace_key
    UNIQUE NULLS NOT DISTINCT (bot_id, identify_method, identifier, external_workspace_id);
