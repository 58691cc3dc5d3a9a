-- The Collect Information form: one submission per fallen-back session, linked to its contact.
ALTER TABLE widget_sessions
    ADD COLUMN collected_at          timestamptz,
    ADD COLUMN collected_contact_id  uuid REFERENCES contacts ON DELETE SET NULL;
