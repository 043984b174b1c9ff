-- 0006: every instance of a deployment claims inbound work.
--
-- Instead of one dispatcher (an advisory lock), each instance leases
-- batches of pending inventory objects (FOR UPDATE SKIP LOCKED) to its
-- owner token until lease_until; an instance that dies leaves its batch to
-- be claimed again when the lease runs out. processed_at records when an
-- object was done, so status can tell the deployment's rate and the time
-- to catch up.

ALTER TABLE inventory ADD COLUMN lease_owner  TEXT   NOT NULL DEFAULT '';
ALTER TABLE inventory ADD COLUMN lease_until  BIGINT NOT NULL DEFAULT 0;   -- micros
ALTER TABLE inventory ADD COLUMN processed_at BIGINT NOT NULL DEFAULT 0;   -- micros; 0: not processed
CREATE INDEX inventory_processed_at ON inventory (processed_at) WHERE processed_at > 0;
