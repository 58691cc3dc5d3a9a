-- A session row is the outbox of its widget.opened event. While the broker is away, the gateway stores the
-- event's message body here (as it goes on the wire: the access token sealed with the key ring) and answers the
-- open; a sweeper in the gateway publishes it once the broker is back and clears it in the same transaction.
-- Every transition that ends a session clears it too, so only a pending session ever holds one.
ALTER TABLE widget_sessions ADD COLUMN unpublished bytea;

-- The sweeper's scan: empty unless the broker was away (an insert with no body adds nothing to it).
CREATE INDEX widget_sessions_unpublished ON widget_sessions (deadline_at) WHERE unpublished IS NOT NULL;
