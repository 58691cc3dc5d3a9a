-- Webhooks to the business: one endpoint per bot, and the deliveries (an outbox: a row is written in the
-- transaction of the change it announces, published to the verifier's webhook queue after the commit, and
-- republished by a sweeper while `published_at` is NULL).
CREATE TABLE webhooks (
    bot_id      uuid PRIMARY KEY REFERENCES bots ON DELETE CASCADE,
    url         text,
    events      text[] NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT enabled OR url IS NOT NULL)
);

CREATE TABLE webhook_deliveries (
    delivery_id     uuid PRIMARY KEY,            -- the body's `id` and the Doorman-Delivery header, on every attempt
    bot_id          uuid NOT NULL REFERENCES bots ON DELETE CASCADE,
    type            text NOT NULL CHECK (type IN ('contact.created', 'contact.updated', 'contact.erased',
                                                  'session.fell_back')),
    body            text NOT NULL,               -- the exact JSON POSTed, the same bytes on every attempt
    contact_id      uuid,                        -- the contact it is about (no foreign key: erased contacts go)
    session_id      text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,                 -- NULL: not yet handed to the broker (the sweeper will)
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (bot_id, created_at DESC, delivery_id DESC);
CREATE INDEX webhook_deliveries_unpublished ON webhook_deliveries (created_at) WHERE published_at IS NULL;
CREATE INDEX webhook_deliveries_contact ON webhook_deliveries (contact_id) WHERE contact_id IS NOT NULL;
