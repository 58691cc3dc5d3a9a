-- The circuit breaker is per bot and business host (docs/security.md, T3: one bot's failing Authentication URL never
-- opens the circuit for another bot on the same host), so each replica records one row per bot, host and replica.
-- The rows so far were per host and cannot be told apart by bot; they only mirror the replicas' memory, and the
-- replicas running this version write their breakers' state again on each transition.
DELETE FROM auth_breakers;

ALTER TABLE auth_breakers
    ADD COLUMN bot_id uuid NOT NULL REFERENCES bots ON DELETE CASCADE,  -- the bot whose calls this breaker counts
    DROP CONSTRAINT auth_breakers_pkey,
    ADD PRIMARY KEY (bot_id, host, replica);
