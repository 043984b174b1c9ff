-- 0002: the pipeline's shared state moves only through checked transitions.
--
-- Outbox rows carry the lease owner (the claiming worker's token) and the
-- proof-of-work job they wait for; every worker write is conditional on
-- both. Proof of work is a durable queue of jobs (pow_jobs). Inbound
-- delivery is idempotent per (user, inventory hash) (deliveries), and an
-- inventory object that keeps failing is set aside with its error.

ALTER TABLE outbox ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN pow_job INTEGER;

CREATE TABLE pow_jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,                   -- msg, broadcast, ack, pubkey, getpubkey
    priority     INTEGER NOT NULL,                -- higher first
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE, -- NULL: the node's own work
    user_seq     INTEGER NOT NULL,                -- rank in its user's queue (fairness)
    outbox_id    INTEGER REFERENCES outbox (id) ON DELETE CASCADE,
    dedupe_key   TEXT UNIQUE,                     -- at most one job per key
    publish      INTEGER NOT NULL,                -- the scheduler publishes the solved object
    headless     BLOB NOT NULL,                   -- the object without its nonce
    target       INTEGER NOT NULL,                -- uint64 stored as int64
    expected     INTEGER NOT NULL,                -- expected trials (uint64 as int64)
    state        TEXT NOT NULL,                   -- pending, solving, solved
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  INTEGER NOT NULL DEFAULT 0,      -- micros
    nonce        INTEGER,                         -- uint64 as int64, once solved
    trials       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    solved_at    INTEGER
) STRICT;
CREATE INDEX pow_jobs_queue ON pow_jobs (state, priority, user_seq, id);
CREATE INDEX pow_jobs_outbox ON pow_jobs (outbox_id) WHERE outbox_id IS NOT NULL;

CREATE TABLE deliveries (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    inv_hash  BLOB NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (user_id, inv_hash)
) STRICT;
-- Pruned with the inventory object it names (Expire); at catches strays.
CREATE INDEX deliveries_inv_hash ON deliveries (inv_hash);
CREATE INDEX deliveries_at ON deliveries (at);

ALTER TABLE inventory ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inventory ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
ALTER TABLE inventory ADD COLUMN retry_at INTEGER NOT NULL DEFAULT 0;   -- micros
ALTER TABLE inventory ADD COLUMN set_aside INTEGER NOT NULL DEFAULT 0;
