-- 0003: a change generation for account data.
--
-- account_generation holds one counter that every insert, update and
-- delete of users, identities, contacts and subscriptions raises, by
-- trigger, so no code path (nor another process, nor an operator's SQL)
-- can change account data without it. The trigger also announces the new
-- value with pg_notify on the bmgate_accounts channel (delivered at
-- commit): each Store keeps the generation in memory from those
-- notifications, and caches of account data (the gateway's identities and
-- subscriptions, the per-command account check of SMTP and IMAP sessions)
-- reload when it moved.
--
-- users' mail counters (used_bytes, next_uidvalidity) change with every
-- delivery and are not account data: updates of only those leave the
-- counter alone. A new users column that caches should see must be added
-- to the UPDATE OF list (in a new migration).

CREATE TABLE account_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT  NOT NULL
);
INSERT INTO account_generation (id, generation) VALUES (1, 1);

CREATE FUNCTION bmgate_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    g BIGINT;
BEGIN
    UPDATE account_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO g;
    PERFORM pg_notify('bmgate_accounts', g::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_generation
AFTER INSERT OR DELETE OR UPDATE OF name, name_key, password_hash, quota_bytes, disabled, delivery_reports ON users
FOR EACH ROW EXECUTE FUNCTION bmgate_account_changed();
CREATE TRIGGER identities_generation AFTER INSERT OR UPDATE OR DELETE ON identities
FOR EACH ROW EXECUTE FUNCTION bmgate_account_changed();
CREATE TRIGGER contacts_generation AFTER INSERT OR UPDATE OR DELETE ON contacts
FOR EACH ROW EXECUTE FUNCTION bmgate_account_changed();
CREATE TRIGGER subscriptions_generation AFTER INSERT OR UPDATE OR DELETE ON subscriptions
FOR EACH ROW EXECUTE FUNCTION bmgate_account_changed();
