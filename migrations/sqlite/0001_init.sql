-- bmgate schema v1 (SQLite). Keep in step with postgres/0001_init.sql.
-- Times are unix microseconds (INTEGER) in both dialects; NULL means "never".
-- uint64 protocol values (streams, versions, services, PoW parameters) are
-- stored bit-for-bit in INTEGER and may read negative in sqlite3.
-- Booleans are INTEGER 0/1. Tables are STRICT so a wrong type fails loudly.

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    name                  TEXT NOT NULL,
    name_key              TEXT NOT NULL UNIQUE,            -- lower-cased login name
    password_hash         TEXT NOT NULL,                   -- argon2id, PHC string
    quota_bytes           INTEGER NOT NULL DEFAULT 0,      -- 0 = unlimited
    used_bytes            INTEGER NOT NULL DEFAULT 0,      -- sum of message sizes
    disabled              INTEGER NOT NULL DEFAULT 0,
    delivery_reports      INTEGER NOT NULL DEFAULT 0,
    next_uidvalidity      INTEGER NOT NULL,                -- next UIDVALIDITY to hand out
    created_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE identities (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address               TEXT NOT NULL,
    label                 TEXT NOT NULL DEFAULT '',
    kind                  TEXT NOT NULL,
    signing_key           BLOB NOT NULL,                   -- AES-256-GCM sealed
    encryption_key        BLOB NOT NULL,                   -- AES-256-GCM sealed
    publish_pubkey        INTEGER NOT NULL,
    nonce_trials_per_byte INTEGER NOT NULL,
    extra_bytes           INTEGER NOT NULL,
    last_pubkey_sent      INTEGER,
    created_at            INTEGER NOT NULL
) STRICT;
-- A personal address belongs to one user; a chan may be joined by several
-- users of one server (its keys come from the chan's passphrase).
CREATE UNIQUE INDEX identities_user_address ON identities (user_id, address);
CREATE UNIQUE INDEX identities_normal_address ON identities (address) WHERE kind <> 'chan';
CREATE INDEX identities_address ON identities (address);

CREATE TABLE contacts (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alias                 TEXT NOT NULL,
    address               TEXT NOT NULL,
    UNIQUE (user_id, alias)
) STRICT;

CREATE TABLE subscriptions (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address               TEXT NOT NULL,
    label                 TEXT NOT NULL DEFAULT '',
    UNIQUE (user_id, address)
) STRICT;

CREATE TABLE pubkeys (
    address               TEXT PRIMARY KEY,
    version               INTEGER NOT NULL,
    stream                INTEGER NOT NULL,
    bitfield              INTEGER NOT NULL,
    signing_key           BLOB NOT NULL,
    encryption_key        BLOB NOT NULL,
    nonce_trials_per_byte INTEGER NOT NULL,
    extra_bytes           INTEGER NOT NULL,
    source                TEXT NOT NULL,
    learned_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE mailboxes (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    special_use           TEXT NOT NULL DEFAULT '',
    subscribed            INTEGER NOT NULL DEFAULT 0,
    uidvalidity           INTEGER NOT NULL,
    uidnext               INTEGER NOT NULL,
    highest_modseq        INTEGER NOT NULL,
    UNIQUE (user_id, name),
    UNIQUE (id, user_id)                               -- target of messages' owner check
) STRICT;
CREATE UNIQUE INDEX mailboxes_special_use ON mailboxes (user_id, special_use) WHERE special_use <> '';

-- Message bytes, shared by the copies of one message (COPY and MOVE do not
-- duplicate them). A body is deleted when its last message goes.
CREATE TABLE bodies (
    id                    INTEGER PRIMARY KEY,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    raw                   BLOB NOT NULL
) STRICT;
CREATE INDEX bodies_user ON bodies (user_id);

CREATE TABLE messages (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    mailbox_id            INTEGER NOT NULL,
    uid                   INTEGER NOT NULL,
    body_id               INTEGER NOT NULL REFERENCES bodies (id),
    flags                 TEXT NOT NULL DEFAULT '',        -- space-separated, sorted
    seen                  INTEGER NOT NULL DEFAULT 0,      -- flags contains \Seen
    deleted               INTEGER NOT NULL DEFAULT 0,      -- flags contains \Deleted
    internal_date         INTEGER NOT NULL,
    size                  INTEGER NOT NULL,
    message_id            TEXT NOT NULL DEFAULT '',
    modseq                INTEGER NOT NULL,
    UNIQUE (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, user_id) REFERENCES mailboxes (id, user_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX messages_body ON messages (body_id);
CREATE INDEX messages_user_message_id ON messages (user_id, message_id);

CREATE TABLE outbox (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_address          TEXT NOT NULL,
    to_address            TEXT NOT NULL,
    kind                  TEXT NOT NULL,
    subject               BLOB NOT NULL,                   -- bytes: any encoding the gateway chose
    body                  BLOB NOT NULL,
    encoding              INTEGER NOT NULL,
    extra          BLOB,
    message_id            TEXT NOT NULL,
    state                 TEXT NOT NULL,
    attempts              INTEGER NOT NULL,
    next_attempt          INTEGER NOT NULL,
    ttl                   INTEGER NOT NULL,                -- nanoseconds
    ack_data       BLOB,
    inv_hash       BLOB,
    last_error            TEXT NOT NULL,
    pow_duration          INTEGER NOT NULL,                -- nanoseconds
    created_at            INTEGER NOT NULL,
    sent_at        INTEGER,
    acked_at       INTEGER,
    notify                INTEGER NOT NULL,
    ret                   TEXT NOT NULL,
    env_id                TEXT NOT NULL,
    orig_rcpt             TEXT NOT NULL,
    delay_reported        INTEGER NOT NULL,
    reported              INTEGER NOT NULL,
    original       BLOB
) STRICT;
CREATE INDEX outbox_due ON outbox (state, next_attempt);
CREATE INDEX outbox_ack_data ON outbox (ack_data) WHERE ack_data IS NOT NULL;
CREATE INDEX outbox_user ON outbox (user_id);

CREATE TABLE inventory (
    id                    INTEGER PRIMARY KEY,             -- arrival order for the pending queue
    hash                  BLOB NOT NULL UNIQUE,
    type                  INTEGER NOT NULL,
    version               INTEGER NOT NULL,
    stream                INTEGER NOT NULL,
    expires               INTEGER NOT NULL,
    tag       BLOB,
    raw                   BLOB NOT NULL,
    processed             INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX inventory_stream_expires ON inventory (stream, expires);
CREATE INDEX inventory_expires ON inventory (expires);
CREATE INDEX inventory_pending ON inventory (id) WHERE NOT processed;
CREATE INDEX inventory_tag ON inventory (tag) WHERE tag IS NOT NULL;

CREATE TABLE known_nodes (
    addr                  TEXT NOT NULL,
    stream                INTEGER NOT NULL,
    services              INTEGER NOT NULL,
    last_seen             INTEGER NOT NULL,
    rating                REAL NOT NULL,
    PRIMARY KEY (addr, stream)
) STRICT;
CREATE INDEX known_nodes_seen ON known_nodes (stream, last_seen);

-- Store-wide values (e.g. the sealed value that proves the secret key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
