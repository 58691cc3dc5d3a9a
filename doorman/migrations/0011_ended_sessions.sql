-- The identity lifecycle: a session's third terminal status, `ended` (the visitor logged out, or the
-- contact's sessions were revoked). Every accepted open ends in exactly one of verified, fallback, ended.
-- (The new CHECK scans widget_sessions once, which old sessions are pruned from.)
ALTER TABLE widget_sessions DROP CONSTRAINT widget_sessions_status_check;
ALTER TABLE widget_sessions ADD CONSTRAINT widget_sessions_status_check
    CHECK (status IN ('pending', 'verified', 'fallback', 'ended'));

-- When and why it ended. resolved_at stays when it was verified or fell back (set now for a session
-- ended while pending); reason and detail keep the fallback's, so the activity log still says how the
-- session had gone before the visitor left.
ALTER TABLE widget_sessions
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN ended_by text CHECK (ended_by IN ('visitor', 'revoked'));

-- Revocation finds a contact's sessions (verified ones by contact_id, the Collect Information form's by
-- collected_contact_id); only sessions with a contact are indexed.
CREATE INDEX widget_sessions_contact ON widget_sessions (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX widget_sessions_collected_contact ON widget_sessions (collected_contact_id)
    WHERE collected_contact_id IS NOT NULL;
