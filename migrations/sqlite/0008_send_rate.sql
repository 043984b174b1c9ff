-- 0008: a per-user sending rate (messages an hour; 0: no limit), checked
-- by EnqueueOutbox under the user's row lock.
ALTER TABLE users ADD COLUMN send_rate INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_user_created ON outbox (user_id, created_at);
