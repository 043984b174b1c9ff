-- 0003: a change generation for account data.
--
-- account_generation holds one counter that every insert, update and
-- delete of users, identities, contacts and subscriptions raises, by
-- trigger, so no code path (nor another process, nor an operator's SQL)
-- can change account data without it. Caches of account data (the
-- gateway's identities and subscriptions, the per-command account check of
-- SMTP and IMAP sessions) compare it with the value they were loaded at and
-- reload when it moved; on SQLite they read it with one small query.
--
-- users' mail counters (used_bytes, next_uidvalidity) change with every
-- delivery and are not account data: updates of only those leave the
-- counter alone. A new users column that caches should see must be added
-- to the UPDATE OF list (in a new migration).

CREATE TABLE account_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
) STRICT;
INSERT INTO account_generation (id, generation) VALUES (1, 1);

CREATE TRIGGER users_generation_insert AFTER INSERT ON users
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER users_generation_update
AFTER UPDATE OF name, name_key, password_hash, quota_bytes, disabled, delivery_reports ON users
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER users_generation_delete AFTER DELETE ON users
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;

CREATE TRIGGER identities_generation_insert AFTER INSERT ON identities
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER identities_generation_update AFTER UPDATE ON identities
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER identities_generation_delete AFTER DELETE ON identities
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;

CREATE TRIGGER contacts_generation_insert AFTER INSERT ON contacts
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER contacts_generation_update AFTER UPDATE ON contacts
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER contacts_generation_delete AFTER DELETE ON contacts
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;

CREATE TRIGGER subscriptions_generation_insert AFTER INSERT ON subscriptions
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER subscriptions_generation_update AFTER UPDATE ON subscriptions
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
CREATE TRIGGER subscriptions_generation_delete AFTER DELETE ON subscriptions
BEGIN UPDATE account_generation SET generation = generation + 1 WHERE id = 1; END;
