-- The outage grace decides which came last, a verification or a refusal of a token, by one clock: the
-- database's (verified_at and rejected_at are now() when written), never a verifier replica's. The
-- verification's observed_at (the replica's time, as on every outcome) is kept apart: a degraded
-- verification carries it, so the contacts service orders it as before.
ALTER TABLE grace_identities ADD COLUMN observed_at timestamptz;
UPDATE grace_identities SET observed_at = verified_at WHERE verified_at IS NOT NULL;
